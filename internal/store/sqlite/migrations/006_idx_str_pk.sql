-- String index rows are deleted by exact key (re-extracted from the previous
-- version), like tokens: no (pk, p) index over the blind rows, a third of the
-- index. Sorting by a string parameter decrypts and sorts the matches.
DROP INDEX IF EXISTS idx_str_pk;
