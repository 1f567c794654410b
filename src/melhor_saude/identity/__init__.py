"""Identity: accounts, sessions (tokens), roles, companies and invites."""
