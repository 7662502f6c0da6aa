DROP TABLE invoices; DROP TABLE subscriptions; DROP TABLE plans;
