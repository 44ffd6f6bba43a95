from fleetkeys.cli import main

main()
