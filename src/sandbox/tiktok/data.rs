//! A shop's generated world: orders with buyers' personal data, their packages, products,
//! returns, cancellations, finance statements and payments, and registered webhooks. Shapes
//! follow the samples in TikTok's API reference; every ID is a decimal string.

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::pii::{Person, Region, digits, tracking_number};

const DAY: i64 = 24 * 3600;

const ORDER_STATUSES: &[&str] = &[
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "AWAITING_SHIPMENT",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "COMPLETED",
    "CANCELLED",
];
const PRODUCT_TITLES: &[&str] = &[
    "Short Boat Invisible Socks",
    "Women's Winter Crochet Clothes",
    "Stainless Steel Water Bottle 750ml",
    "Wireless Earbuds with Charging Case",
    "Organic Cotton Baby Romper",
    "LED Desk Lamp with USB Port",
    "Silicone Phone Case",
    "Yoga Mat Non-Slip 6mm",
    "Ceramic Coffee Mug Set",
    "Facial Tissue 180s x 5",
];
const SKU_NAMES: &[&str] = &[
    "white,128g",
    "Red, M",
    "Blue, L",
    "Black, One Size",
    "1#, Standard",
];
const CARRIERS: &[(&str, &str)] = &[
    ("TT Virtual express", "6617675021119438849"),
    ("USPS", "7117858858072016645"),
    ("Royal Mail", "7129736301258950406"),
    ("Correios", "7211904557349324546"),
];
const CANCEL_REASONS: &[&str] = &["Pricing error", "Out of stock", "Buyer changed mind"];

/// A registered webhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub address: String,
    pub create_time: i64,
    pub update_time: i64,
}

/// Everything one shop has.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShopData {
    /// Newest first.
    pub orders: Vec<Value>,
    pub packages: Vec<Value>,
    pub products: Vec<Value>,
    pub returns: Vec<Value>,
    pub cancellations: Vec<Value>,
    pub statements: Vec<Value>,
    pub payments: Vec<Value>,
    pub webhooks: BTreeMap<String, Webhook>,
    pub uploads: u64,
}

/// A numeric field of a JSON object, 0 when absent.
pub(crate) fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A string field of a JSON object, "" when absent.
pub(crate) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn money(rng: &mut StdRng, lo: u32, hi: u32) -> String {
    let cents = rng.random_range(lo * 100..hi * 100);
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl ShopData {
    pub(crate) fn generate(rng: &mut StdRng, region: &str, orders: usize, now: i64) -> Self {
        let region = Region::parse(region);
        let currency = region.currency();
        let warehouse_id = digits(rng, "69", 19);
        let mut data = Self::default();

        for _ in 0..12 {
            data.products
                .push(product(rng, currency, &warehouse_id, now));
        }

        let mut created: Vec<i64> = (0..orders)
            .map(|_| now - rng.random_range(3600..30 * DAY))
            .collect();
        created.sort_unstable_by(|a, b| b.cmp(a));
        for create_time in created {
            let person = Person::generate(rng, region);
            let status = ORDER_STATUSES
                .choose(rng)
                .copied()
                .unwrap_or("AWAITING_SHIPMENT");
            let (order, package) = order(
                rng,
                &data.products,
                &person,
                status,
                currency,
                &warehouse_id,
                create_time,
            );
            if status == "CANCELLED" {
                data.cancellations.push(cancellation(rng, &order, currency));
            }
            if matches!(status, "DELIVERED" | "COMPLETED") && rng.random_bool(0.3) {
                data.returns
                    .push(return_order(rng, &order, &person, currency));
            }
            if let Some(package) = package {
                data.packages.push(package);
            }
            data.orders.push(order);
        }

        for day in 1..=14 {
            data.statements
                .push(statement(rng, currency, now - day * DAY));
        }
        for week in 1..=6 {
            data.payments
                .push(payment(rng, currency, now - week * 7 * DAY));
        }
        data
    }

    pub(crate) fn order_ids(&self) -> Vec<String> {
        self.orders
            .iter()
            .map(|o| text(o, "id").to_owned())
            .collect()
    }

    pub(crate) fn order(&self, id: &str) -> Option<&Value> {
        self.orders.iter().find(|o| text(o, "id") == id)
    }

    pub(crate) fn package(&self, id: &str) -> Option<&Value> {
        self.packages.iter().find(|p| text(p, "package_id") == id)
    }

    pub(crate) fn product(&self, id: &str) -> Option<&Value> {
        self.products.iter().find(|p| text(p, "id") == id)
    }

    /// Marks a package shipped (and its order awaiting collection). `Err` if already shipped.
    pub(crate) fn ship(
        &mut self,
        rng: &mut StdRng,
        package_id: &str,
        tracking: Option<&str>,
        now: i64,
    ) -> Result<(), ()> {
        let Some(package) = self
            .packages
            .iter_mut()
            .find(|p| text(p, "package_id") == package_id)
        else {
            return Err(());
        };
        if text(package, "package_status") != "PROCESSING" {
            return Err(());
        }
        let number = tracking.map_or_else(|| tracking_number(rng), str::to_owned);
        package["package_status"] = json!("FULFILLING");
        package["tracking_number"] = json!(number);
        package["update_time"] = json!(now);
        let order_id = package["orders"][0]["id"].as_str().unwrap_or("").to_owned();
        if let Some(order) = self.orders.iter_mut().find(|o| text(o, "id") == order_id) {
            order["status"] = json!("AWAITING_COLLECTION");
            order["tracking_number"] = json!(number);
            order["update_time"] = json!(now);
            if let Some(items) = order["line_items"].as_array_mut() {
                for item in items {
                    item["tracking_number"] = json!(number);
                    item["display_status"] = json!("AWAITING_COLLECTION");
                }
            }
        }
        Ok(())
    }
}

fn product(rng: &mut StdRng, currency: &str, warehouse_id: &str, now: i64) -> Value {
    let id = digits(rng, "17", 19);
    let title = PRODUCT_TITLES.choose(rng).copied().unwrap_or("Product");
    let status = *[
        "ACTIVATE",
        "ACTIVATE",
        "ACTIVATE",
        "DRAFT",
        "SELLER_DEACTIVATED",
    ]
    .choose(rng)
    .unwrap_or(&"ACTIVATE");
    let skus: Vec<Value> = (0..rng.random_range(1..4))
        .map(|_| {
            let price = money(rng, 3, 80);
            json!({
                "id": digits(rng, "17", 19),
                "seller_sku": format!("SKU-{}", rng.random_range(1000..9999)),
                "price": {"currency": currency, "tax_exclusive_price": price, "sale_price": price},
                "inventory": [{"warehouse_id": warehouse_id, "quantity": rng.random_range(0..999)}]
            })
        })
        .collect();
    let image = format!("tos-maliva-i-o3syd03w52-us/{}", hex_id(rng));
    json!({
        "id": id,
        "title": title,
        "status": status,
        "description": format!("<p>{title}</p>"),
        "category_chains": [{"id": "853000", "parent_id": "851848", "local_name": "Home Supplies", "is_leaf": true}],
        "main_images": [{"height": 600, "width": 600, "uri": image,
            "urls": [format!("https://p16-oec-va.ibyteimg.com/{image}~tplv-o3syd03w52-origin-jpeg.jpeg")]}],
        "package_weight": {"value": money(rng, 0, 3), "unit": "KILOGRAM"},
        "skus": skus,
        "sales_regions": ["US"],
        "create_time": now - rng.random_range(30..400) * DAY,
        "update_time": now - rng.random_range(0..30) * DAY,
        "is_not_for_sale": false
    })
}

fn hex_id(rng: &mut StdRng) -> String {
    (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn order(
    rng: &mut StdRng,
    products: &[Value],
    person: &Person,
    status: &str,
    currency: &str,
    warehouse_id: &str,
    create_time: i64,
) -> (Value, Option<Value>) {
    let id = digits(rng, "57", 18);
    let (carrier, carrier_id) = CARRIERS.choose(rng).copied().unwrap_or(("", ""));
    let shipped = matches!(
        status,
        "AWAITING_COLLECTION" | "IN_TRANSIT" | "DELIVERED" | "COMPLETED"
    );
    let tracking = if shipped {
        tracking_number(rng)
    } else {
        String::new()
    };
    let package_id = digits(rng, "11", 19);
    let has_package = status != "UNPAID" && status != "ON_HOLD";
    let update_time = create_time + rng.random_range(60..2 * DAY);

    let mut subtotal_cents = 0u64;
    let mut line_items = Vec::new();
    for _ in 0..rng.random_range(1..4) {
        let Some(product) = products.choose(rng) else {
            break;
        };
        let Some(sku) = product["skus"].as_array().and_then(|s| s.first()) else {
            continue;
        };
        let price = sku["price"]["sale_price"]
            .as_str()
            .unwrap_or("0")
            .to_owned();
        subtotal_cents += price.replace('.', "").parse::<u64>().unwrap_or(0);
        line_items.push(json!({
            "id": digits(rng, "57", 18),
            "sku_id": text(sku, "id"),
            "product_id": text(product, "id"),
            "product_name": text(product, "title"),
            "sku_name": SKU_NAMES.choose(rng).copied().unwrap_or(""),
            "sku_image": product["main_images"][0]["urls"][0],
            "seller_sku": text(sku, "seller_sku"),
            "original_price": price,
            "sale_price": price,
            "currency": currency,
            "platform_discount": "0",
            "seller_discount": "0",
            "display_status": status,
            "package_id": if has_package { json!(package_id) } else { json!("") },
            "package_status": if shipped { "SHIPPED" } else { "TO_FULFILL" },
            "shipping_provider_id": carrier_id,
            "shipping_provider_name": carrier,
            "tracking_number": tracking,
            "is_gift": false,
            "rts_time": if shipped { update_time } else { 0 }
        }));
    }
    let shipping_cents = rng.random_range(0..1000u64);
    let total = |c: u64| format!("{}.{:02}", c / 100, c % 100);

    let mut order = json!({
        "id": id,
        "status": status,
        "create_time": create_time,
        "update_time": update_time,
        "paid_time": if status == "UNPAID" { 0 } else { create_time + 60 },
        "user_id": person.user_id,
        "buyer_email": person.email,
        "buyer_message": person.buyer_message,
        "recipient_address": person.address_json(),
        "payment": {
            "currency": currency,
            "sub_total": total(subtotal_cents),
            "shipping_fee": total(shipping_cents),
            "seller_discount": "0",
            "platform_discount": "0",
            "total_amount": total(subtotal_cents + shipping_cents),
            "original_total_product_price": total(subtotal_cents),
            "original_shipping_fee": total(shipping_cents),
            "tax": "0"
        },
        "payment_method_name": *["CCDC", "PayPal", "Apple Pay", "Pix"].choose(rng).unwrap_or(&"CCDC"),
        "payment_auth_code": format!("AUTH{}", rng.random_range(100_000..999_999)),
        "shipping_provider": carrier,
        "shipping_provider_id": carrier_id,
        "shipping_type": "TIKTOK",
        "tracking_number": tracking,
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "delivery_type": "HOME_DELIVERY",
        "delivery_option_name": "Standard Shipping",
        "delivery_option_id": "7091146663229654785",
        "warehouse_id": warehouse_id,
        "seller_note": if rng.random_bool(0.2) { format!("Call buyer on {}", person.phone) } else { String::new() },
        "is_cod": false,
        "is_sample_order": false,
        "is_on_hold_order": status == "ON_HOLD",
        "has_updated_recipient_address": false,
        "split_or_combine_tag": "",
        "packages": if has_package { json!([{"id": package_id}]) } else { json!([]) },
        "line_items": line_items,
        "rts_sla_time": create_time + 2 * DAY,
        "tts_sla_time": create_time + 3 * DAY,
        "commerce_platform": "TIKTOK_SHOP",
        "consultation_id": digits(rng, "", 6)
    });
    if status == "CANCELLED" {
        order["cancel_reason"] = json!(CANCEL_REASONS.choose(rng).copied().unwrap_or(""));
        order["cancellation_initiator"] = json!("BUYER");
        order["cancel_time"] = json!(update_time);
    }
    if let Some(cpf) = &person.cpf {
        order["cpf"] = json!(cpf);
        order["cpf_name"] = json!(person.full_name());
    }

    let package = has_package.then(|| {
        let package_status = match status {
            "CANCELLED" => "CANCELLED",
            "AWAITING_SHIPMENT" => "PROCESSING",
            "DELIVERED" | "COMPLETED" => "COMPLETED",
            _ => "FULFILLING",
        };
        let skus: Vec<Value> = order["line_items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| json!({"id": i["sku_id"], "name": i["sku_name"], "image_url": i["sku_image"], "quantity": 1}))
                    .collect()
            })
            .unwrap_or_default();
        let item_ids: Vec<Value> = order["line_items"]
            .as_array()
            .map(|items| items.iter().map(|i| i["id"].clone()).collect())
            .unwrap_or_default();
        json!({
            "package_id": package_id,
            "orders": [{"id": order["id"], "skus": skus}],
            "package_status": package_status,
            "shipping_provider_name": carrier,
            "shipping_provider_id": carrier_id,
            "shipping_type": "TIKTOK",
            "tracking_number": tracking,
            "create_time": create_time + 120,
            "update_time": update_time,
            "handover_method": "PICKUP",
            "order_line_item_ids": item_ids,
            "recipient_address": person.address_json(),
            "sender_address": {
                "full_address": "5800 Bristol Pkwy, Suite 100, Culver City, CA 90230",
                "phone_number": "(+1)310-555-0142",
                "name": "Sandbox Fulfilment Centre",
                "postal_code": "90230",
                "region_code": "US",
                "address_line1": "5800 Bristol Pkwy",
                "address_line2": "Suite 100"
            },
            "weight": {"value": "1.2", "unit": "KILOGRAM"}
        })
    });
    (order, package)
}

fn cancellation(rng: &mut StdRng, order: &Value, currency: &str) -> Value {
    let total = order["payment"]["total_amount"].clone();
    json!({
        "cancel_id": digits(rng, "40", 19),
        "order_id": order["id"],
        "cancel_type": "CANCEL",
        "cancel_status": "CANCELLATION_REQUEST_COMPLETE",
        "role": "BUYER",
        "cancel_reason": "ecom_order_to_ship_canceled_reason_created_by_mistakes",
        "cancel_reason_text": order["cancel_reason"],
        "create_time": int(order, "update_time"),
        "update_time": int(order, "update_time"),
        "refund_amount": {"currency": currency, "refund_total": total}
    })
}

fn return_order(rng: &mut StdRng, order: &Value, person: &Person, currency: &str) -> Value {
    let line = &order["line_items"][0];
    json!({
        "return_id": digits(rng, "40", 19),
        "order_id": order["id"],
        "return_type": "RETURN_AND_REFUND",
        "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
        "role": "BUYER",
        "return_reason_text": "Item not as described",
        "return_tracking_number": tracking_number(rng),
        "create_time": int(order, "update_time") + DAY,
        "update_time": int(order, "update_time") + DAY,
        "return_line_items": [{
            "return_line_item_id": digits(rng, "40", 19),
            "order_line_item_id": line["id"],
            "sku_id": line["sku_id"],
            "product_name": line["product_name"],
            "refund_amount": {"currency": currency, "refund_total": line["sale_price"]}
        }],
        "refund_amount": {"currency": currency, "refund_total": line["sale_price"]},
        "return_warehouse_address": {"full_address": person.full_address()}
    })
}

fn statement(rng: &mut StdRng, currency: &str, time: i64) -> Value {
    let revenue = rng.random_range(10_000..500_000u64);
    let fee = revenue / 20;
    let cents = |c: u64| format!("{}.{:02}", c / 100, c % 100);
    json!({
        "id": digits(rng, "72", 19),
        "statement_time": time,
        "settlement_amount": cents(revenue - fee),
        "currency": currency,
        "revenue_amount": cents(revenue),
        "fee_amount": format!("-{}", cents(fee)),
        "adjustment_amount": "0",
        "payment_status": if time > 0 { "PAID" } else { "PROCESSING" },
        "payment_id": digits(rng, "34", 19)
    })
}

fn payment(rng: &mut StdRng, currency: &str, time: i64) -> Value {
    let amount = rng.random_range(100..5000u64).to_string();
    json!({
        "id": digits(rng, "34", 19),
        "create_time": time,
        "status": "PAID",
        "amount": {"value": amount, "currency": currency},
        "settlement_amount": {"value": amount, "currency": currency},
        "reserve_amount": {"value": "0", "currency": currency},
        "exchange_rate": "1.000000",
        "paid_time": time + DAY,
        "bank_account": format!("***********{:04}", rng.random_range(0..10_000))
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn generation_is_repeatable_and_ids_are_strings() {
        let a = ShopData::generate(&mut StdRng::seed_from_u64(5), "BR", 20, 1_700_000_000);
        let b = ShopData::generate(&mut StdRng::seed_from_u64(5), "BR", 20, 1_700_000_000);
        assert_eq!(a.orders, b.orders);
        assert_eq!(a.orders.len(), 20);
        for order in &a.orders {
            assert!(order["id"].is_string());
            assert_eq!(text(order, "id").len(), 18);
            assert!(order["cpf"].is_string(), "Brazilian orders carry a CPF");
            assert!(text(order, "buyer_email").contains('@'));
            assert!(!text(&order["recipient_address"], "phone_number").is_empty());
        }
        // Newest first.
        assert!(
            a.orders
                .windows(2)
                .all(|w| int(&w[0], "create_time") >= int(&w[1], "create_time"))
        );
    }

    #[test]
    fn shipping_moves_state_once() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut data = ShopData::generate(&mut rng, "US", 40, 1_700_000_000);
        let id = data
            .packages
            .iter()
            .find(|p| text(p, "package_status") == "PROCESSING")
            .map(|p| text(p, "package_id").to_owned())
            .expect("some package awaits shipment");
        assert!(
            data.ship(&mut rng, &id, Some("TT123"), 1_700_000_100)
                .is_ok()
        );
        assert_eq!(text(data.package(&id).unwrap(), "tracking_number"), "TT123");
        assert!(data.ship(&mut rng, &id, None, 1_700_000_200).is_err());
    }
}
