DROP TABLE usage_records; DROP TABLE ledger; DROP TABLE balances;
