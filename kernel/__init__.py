"""The shared kernel below every domain: errors, the clock, money, pagination, retries, the
leased outbox and the unit of work. It imports nothing of CostGraph but ``models``."""
