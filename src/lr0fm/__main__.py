"""`python -m lr0fm ...`: the `lr0fm` command, also as torchrun starts it (`torchrun ... -m lr0fm tokens train`)."""

from .cli import main

if __name__ == "__main__":
    main()
