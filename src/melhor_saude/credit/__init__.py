"""Session credits: the append-only ledger every funded booking reserves from and
settles into, whatever the funding source (a company's quota today, packages next)."""
