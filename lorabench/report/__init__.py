"""The reporting layer: records -> comparisons (grid.py), statistics (stats.py), the papers' claims
(claims.py, claims.yaml), tables across tasks (across.py), plots, the papers' own numbers (paper_tables.py),
and the files `make leaderboard` writes (leaderboard.py, readme.py). Nothing here trains or scores a model."""
