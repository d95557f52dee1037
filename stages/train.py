"""DVC stage entry point; the command lives in prunelab.commands.train (also `prunelab train`)."""

from prunelab.commands.train import app

if __name__ == "__main__":
    app()
