"""Client companies: details, seats, the session pool, members and their allocations."""
