from emgstream.cli import main

main()
