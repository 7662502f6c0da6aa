-- ListEvents by product (the User actions tab's first filter) and by client
-- IP read their own index, like every other filter the API serves: without
-- them a rare product or any one address meant filtering the time index
-- across the whole window.
CREATE INDEX events_product ON events (product, occurred_at DESC, seq DESC);
CREATE INDEX events_client_ip ON events (client_ip, occurred_at DESC, seq DESC) WHERE client_ip <> '';
