from optbench.ui.cli import main

main()
