"""The read side of the lineage database: the queries behind reports, the CLI's listings and the UI.

Writes go through the aggregate modules (``lineage.clips``, ``lineage.datasets``, ...); these functions
only read, and each answers one question a page or a report asks.
"""
