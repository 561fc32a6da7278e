CREATE TABLE `wm_customers` (
    `id` INT NOT NULL AUTO_INCREMENT,
    `name` VARCHAR(100) NOT NULL COMMENT 'display name',
    CONSTRAINT `pk_wm_customers` PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Customers';

CREATE TABLE `wm_orders` (
    `id` BIGINT NOT NULL AUTO_INCREMENT COMMENT 'surrogate key',
    `customer_id` INT NOT NULL,
    `total` DECIMAL(10, 2) NOT NULL DEFAULT 0,
    `ratio` DOUBLE DEFAULT 0.5,
    `status` ENUM('new', 'paid', 'shipped') NOT NULL DEFAULT 'new',
    `email` VARCHAR(200),
    `note` LONGTEXT DEFAULT 'it''s a:note 100%',
    `paid` TINYINT(1) NOT NULL DEFAULT 0,
    `payload` LONGBLOB,
    `due` DATE DEFAULT '2024-01-31',
    `created_at` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    `attributes` JSON,
    `token` CHAR(36) NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    `quantity` INT DEFAULT -1,
    `referrer_id` BIGINT,
    CONSTRAINT `pk_wm_orders` PRIMARY KEY (`id`),
    CONSTRAINT `fk_wm_orders_customer_id` FOREIGN KEY (`customer_id`) REFERENCES `wm_customers` (`id`) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT `fk_wm_orders_referrer_id` FOREIGN KEY (`referrer_id`) REFERENCES `wm_orders` (`id`) ON DELETE SET NULL,
    CONSTRAINT `ck_wm_orders_total` CHECK (total >= 0),
    CONSTRAINT `ck_wm_orders_paid_total` CHECK (paid = false OR total > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='One row per order; it''s the everything-model';

CREATE UNIQUE INDEX `uq_wm_orders_email` ON `wm_orders` (`email`);

CREATE INDEX `ix_wm_orders_customer_id_status` ON `wm_orders` (`customer_id`, `status`);

CREATE UNIQUE INDEX `ux_wm_orders_customer_id_token` ON `wm_orders` (`customer_id`, `token`);

CREATE TABLE `wm_line_items` (
    `order_id` BIGINT NOT NULL,
    `position` INT NOT NULL,
    `sku` VARCHAR(40) NOT NULL,
    CONSTRAINT `pk_wm_line_items` PRIMARY KEY (`order_id`, `position`),
    CONSTRAINT `fk_wm_line_items_order_id` FOREIGN KEY (`order_id`) REFERENCES `wm_orders` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
