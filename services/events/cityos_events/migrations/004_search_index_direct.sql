-- Reports are searched for right after they are posted ("is my report there?"). With GIN's
-- fast update a new report's bigrams wait in a pending list that every search scans whole and
-- that some unlucky insert then flushes: searches grow slower with the intake rate and that
-- insert stalls. Written straight into the index, each insert costs a little more, always.
ALTER INDEX reports_bigrams SET (fastupdate = off);
