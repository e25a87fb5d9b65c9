"""One module per scenario. Each has ``run(bench)``; the report's sections and targets sit beside it."""
