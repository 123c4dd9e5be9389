"""Allow `python -m egocache`."""

from egocache.cli import main

if __name__ == "__main__":
    main()
