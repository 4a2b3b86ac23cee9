"""The database layer every feature shares: the engine (``engine``), the one ``metadata`` and its
column types (``metadata``), and the statements that differ between SQLite and PostgreSQL
(``dialect``). Features keep their own tables and repositories; nothing here imports them."""
