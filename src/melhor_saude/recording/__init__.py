"""Meeting recordings: private storage, signed links that expire, an expiry job that
never orphans (SPEC §10). Metadata rules are migration 0024's; bytes are
`storage/`'s."""
