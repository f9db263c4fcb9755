"""`groupspec serve`: a Segment-compatible HTTP intake that spools every accepted request to disk and a worker
that takes the spool, in order, through the contract to Customer.io and an optional upstream CDP."""
