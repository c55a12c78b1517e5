from signdb.cli import main

main()
