-- Settlement's system of record: trades, orders, the double-entry ledger, 1-minute candles,
-- and where the consumer stands (offsets and each symbol's engine chain), all written in one
-- transaction per batch.
--
-- Amounts are BIGINT atoms (the contract's int64); sums that could pass int64 are NUMERIC.
-- Ids are the contract's uint64 stored as BIGINT: values from 2**63 up are stored negative
-- (two's complement; see settlement/core/rows.py). Times are Unix nanoseconds.
-- Enum columns hold the proto numbers (ordermesh/v1/common.proto).

CREATE TABLE trades (
    symbol            text     NOT NULL,
    trade_id          bigint   NOT NULL,
    sequence          bigint   NOT NULL CHECK (sequence > 0),
    maker_order_id    bigint   NOT NULL,
    taker_order_id    bigint   NOT NULL,
    maker_account_id  bigint   NOT NULL,
    taker_account_id  bigint   NOT NULL,
    taker_side        smallint NOT NULL CHECK (taker_side IN (1, 2)),
    price             bigint   NOT NULL CHECK (price > 0),
    quantity          bigint   NOT NULL CHECK (quantity > 0),
    quote_quantity    bigint   NOT NULL CHECK (quote_quantity >= 0),
    maker_fee         bigint   NOT NULL CHECK (maker_fee >= 0),
    taker_fee         bigint   NOT NULL CHECK (taker_fee >= 0),
    timestamp_ns      bigint   NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
-- ListTrades by account (either side), newest first; GetTicker's partial minutes.
CREATE INDEX trades_by_maker ON trades (maker_account_id, timestamp_ns, symbol, trade_id);
CREATE INDEX trades_by_taker ON trades (taker_account_id, timestamp_ns, symbol, trade_id);
CREATE INDEX trades_by_time ON trades (symbol, timestamp_ns, trade_id);

CREATE TABLE orders (
    order_id               bigint   PRIMARY KEY,
    symbol                 text     NOT NULL,
    account_id             bigint   NOT NULL,
    -- Static fields: NULL until the record that carries them (NewOrder, OrderAccepted) is in.
    client_order_id        text,
    side                   smallint CHECK (side IN (1, 2)),
    order_type             smallint CHECK (order_type IN (1, 2)),
    time_in_force          smallint CHECK (time_in_force IN (1, 2, 3)),
    price                  bigint   CHECK (price >= 0),
    quantity               bigint   CHECK (quantity >= 0),
    quote_budget           bigint   CHECK (quote_budget >= 0),
    post_only              boolean,
    self_trade_prevention  smallint CHECK (self_trade_prevention IN (1, 2, 3, 4)),
    status                 smallint NOT NULL CHECK (status BETWEEN 1 AND 7),
    reason                 integer  NOT NULL,
    filled_quantity        bigint   NOT NULL CHECK (filled_quantity >= 0),
    filled_quote_quantity  bigint   NOT NULL CHECK (filled_quote_quantity >= 0),
    accepted               boolean  NOT NULL,
    created_ns             bigint   NOT NULL,
    updated_ns             bigint   NOT NULL
);
-- ListOrders (all, by symbol, open only), newest first; GetOrder by client_order_id.
CREATE INDEX orders_by_account ON orders (account_id, order_id);
CREATE INDEX orders_by_account_symbol ON orders (account_id, symbol, order_id);
CREATE INDEX orders_open_by_account ON orders (account_id, order_id) WHERE status IN (1, 2, 3);
CREATE INDEX orders_by_client_order_id ON orders (account_id, client_order_id);

-- Append-only double entry: for every reference the legs of each asset sum to zero.
CREATE TABLE ledger_entries (
    entry_id      bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint   NOT NULL,
    asset         text     NOT NULL,
    -- 1 DEPOSIT, 2 WITHDRAWAL, 3 TRADE, 4 FEE
    kind          smallint NOT NULL CHECK (kind IN (1, 2, 3, 4)),
    -- Signed atoms: credit positive, debit negative.
    amount        bigint   NOT NULL CHECK (amount <> 0),
    -- "SYMBOL:trade_id" for a trade, the funding reference_id for a deposit or withdrawal.
    reference     text     NOT NULL,
    timestamp_ns  bigint   NOT NULL,
    UNIQUE (reference, account_id, asset, kind)
);
CREATE INDEX ledger_by_account ON ledger_entries (account_id, entry_id);
CREATE INDEX ledger_by_account_asset ON ledger_entries (account_id, asset, entry_id);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

-- The balance of every customer and the fee account (the external account,
-- 9223372036854775807, is left out: it holds minus what came in).
CREATE VIEW account_balances AS
SELECT account_id, asset, sum(amount) AS balance
FROM ledger_entries
WHERE account_id <> 9223372036854775807
GROUP BY account_id, asset;

CREATE TABLE candles (
    symbol        text           NOT NULL,
    open_time_ns  bigint         NOT NULL,
    open          bigint         NOT NULL CHECK (open > 0),
    high          bigint         NOT NULL CHECK (high > 0),
    low           bigint         NOT NULL CHECK (low > 0),
    close         bigint         NOT NULL CHECK (close > 0),
    volume        numeric(38, 0) NOT NULL,
    quote_volume  numeric(38, 0) NOT NULL,
    trade_count   bigint         NOT NULL CHECK (trade_count > 0),
    PRIMARY KEY (symbol, open_time_ns)
);

-- The next offset to read of every partition, stored with the rows it led to.
CREATE TABLE consumer_offsets (
    consumer     text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL CHECK (partition >= 0),
    next_offset  bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Where each symbol's engine chain stands: the last event of the last command written.
CREATE TABLE symbol_chains (
    symbol      text        PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    sequence    bigint      NOT NULL CHECK (sequence > 0),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
