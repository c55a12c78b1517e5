from signdb.cli import main

# The guard matters: decoding workers (forkserver/spawn) re-import __main__.
if __name__ == "__main__":
    main()
