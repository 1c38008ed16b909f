from netgap.cli import main

main()
