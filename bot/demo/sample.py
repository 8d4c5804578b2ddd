"""A small shop: what a demo backs up. Customers, products, orders and their lines, with
primary keys, foreign keys, indexes, a sequence and a citext column, made by the server in
well under a second."""

from __future__ import annotations

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE products (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(10,2) NOT NULL CHECK (price >= 0)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    placed_at timestamptz NOT NULL,
    status text NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, placed_at DESC);
CREATE TABLE order_lines (
    order_id bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line smallint NOT NULL,
    product_id int NOT NULL REFERENCES products(id),
    qty int NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_lines_product ON order_lines (product_id);
CREATE SEQUENCE invoice_number START 1000;
"""

DATA = """
INSERT INTO customers (email, name, created_at)
  SELECT 'customer' || g || '@example.com', 'Customer ' || g,
         timestamptz '2025-01-01' + g * interval '7 minutes'
  FROM generate_series(1, 5000) g;
INSERT INTO products (sku, title, price)
  SELECT 'SKU-' || g, 'Product ' || g, (g % 400) * 1.25 FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, placed_at, status)
  SELECT 1 + g % 5000, timestamptz '2025-06-01' + g * interval '3 minutes',
         (ARRAY['paid', 'shipped', 'returned'])[1 + g % 3]
  FROM generate_series(1, 20000) g;
INSERT INTO order_lines
  SELECT o, l, 1 + (o * 7 + l) % 500, 1 + l FROM generate_series(1, 20000) o,
         generate_series(1, 3) l;
SELECT setval('invoice_number', 21000);
"""

# The app-flow checks a team would write for it (ATLAS_CONFIG [[checks]]).
CHECKS = """
[[checks]]
name = "customers can be found by email"
sql = "SELECT count(*) = 1 FROM customers WHERE email = 'CUSTOMER42@EXAMPLE.COM'"

[[checks]]
name = "every order has lines"
sql = "SELECT NOT EXISTS (SELECT 1 FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id))"
"""
