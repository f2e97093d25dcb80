"""The dashboard's views, one per file, each drawn by its `view` function when its tab is open."""
