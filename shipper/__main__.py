from shipper.cli.main import main

main()
