"""DVC stage entry point; the command lives in prunelab.commands.prune (also `prunelab prune`)."""

from prunelab.commands.prune import app

if __name__ == "__main__":
    app()
