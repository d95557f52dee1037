"""DVC stage entry point; the command lives in prunelab.commands.fetch (also `prunelab fetch`)."""

from prunelab.commands.fetch import app

if __name__ == "__main__":
    app()
