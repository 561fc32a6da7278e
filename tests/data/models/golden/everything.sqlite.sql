CREATE TABLE "wm_customers" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "name" VARCHAR(100) NOT NULL
);

CREATE TABLE "wm_orders" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "customer_id" INTEGER NOT NULL,
    "total" DECIMAL(10, 2) NOT NULL DEFAULT 0,
    "ratio" REAL DEFAULT 0.5,
    "status" TEXT NOT NULL DEFAULT 'new',
    "email" VARCHAR(200),
    "note" TEXT DEFAULT 'it''s a:note 100%',
    "paid" BOOLEAN NOT NULL DEFAULT 0,
    "payload" BLOB,
    "due" DATE DEFAULT '2024-01-31',
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attributes" TEXT,
    "token" CHAR(36) NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    "quantity" INTEGER DEFAULT -1,
    "referrer_id" BIGINT,
    CONSTRAINT "fk_wm_orders_customer_id" FOREIGN KEY ("customer_id") REFERENCES "wm_customers" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "fk_wm_orders_referrer_id" FOREIGN KEY ("referrer_id") REFERENCES "wm_orders" ("id") ON DELETE SET NULL,
    CONSTRAINT "ck_wm_orders_total" CHECK (total >= 0),
    CONSTRAINT "ck_wm_orders_status_enum" CHECK ("status" IN ('new', 'paid', 'shipped')),
    CONSTRAINT "ck_wm_orders_attributes_json" CHECK ("attributes" IS NULL OR json_valid("attributes")),
    CONSTRAINT "ck_wm_orders_paid_total" CHECK (paid = false OR total > 0)
);

CREATE UNIQUE INDEX "uq_wm_orders_email" ON "wm_orders" ("email");

CREATE INDEX "ix_wm_orders_customer_id_status" ON "wm_orders" ("customer_id", "status");

CREATE UNIQUE INDEX "ux_wm_orders_customer_id_token" ON "wm_orders" ("customer_id", "token");

CREATE TABLE "wm_line_items" (
    "order_id" BIGINT NOT NULL,
    "position" INTEGER NOT NULL,
    "sku" VARCHAR(40) NOT NULL,
    CONSTRAINT "pk_wm_line_items" PRIMARY KEY ("order_id", "position"),
    CONSTRAINT "fk_wm_line_items_order_id" FOREIGN KEY ("order_id") REFERENCES "wm_orders" ("id") ON DELETE CASCADE
);
