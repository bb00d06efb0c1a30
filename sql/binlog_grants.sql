-- Lets pitstop's database user follow the binary log (invalidation.binlog): writes made around
-- pitstop are then relayed as they commit instead of at the relay's next interval. Run as an
-- administrator; change the user if yours is not 'pitstop'@'%'.
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'pitstop'@'%';
