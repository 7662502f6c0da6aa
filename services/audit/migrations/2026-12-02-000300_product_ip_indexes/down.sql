DROP INDEX events_client_ip;
DROP INDEX events_product;
