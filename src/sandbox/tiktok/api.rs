//! The Open API side of the sandbox: which paths exist (and with which method), TikTok's checks
//! on each call, per-shop throttling, then the answer from the shop's data.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::check::{self, Caller, CipherRule, Params};
use super::data::{ShopData, Webhook, int, text};
use super::multipart;
use super::pagination::{List, page, paginate};
use super::record::RejectReason;
use super::reply::{self, Reply};
use super::state::{Inner, SandboxState};
use super::throttle::{Bucket, retry_after_secs};
use super::tokens;

/// `GET /order/{v}/orders?ids=` takes at most this many IDs.
const MAX_ORDER_IDS: usize = 50;

const EVENT_TYPES: &[&str] = &[
    "ORDER_STATUS_CHANGE",
    "RECIPIENT_ADDRESS_UPDATE",
    "PACKAGE_UPDATE",
    "PRODUCT_STATUS_CHANGE",
    "SELLER_DEAUTHORIZATION",
    "UPCOMING_AUTHORIZATION_EXPIRATION",
    "CANCELLATION_STATUS_CHANGE",
    "RETURN_STATUS_CHANGE",
    "NEW_CONVERSATION",
    "NEW_MESSAGE",
];

/// Every API the sandbox serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    AuthorizedShops,
    SellerShops,
    SellerPermissions,
    OrderSearch,
    OrderDetail,
    PackageSearch,
    PackageDetail(String),
    PackageShip(String),
    ShippingDocuments(String),
    OrderTracking(String),
    ProductSearch,
    ProductDetail(String),
    ImageUpload,
    ReturnSearch,
    CancellationSearch,
    Statements,
    Payments,
    Webhooks,
}

/// Maps a path to its API and the methods it takes; unknown paths are `36009009`.
fn route(path: &str) -> Option<(Endpoint, &'static [Method], CipherRule)> {
    use CipherRule::{Refused, Required};
    use Endpoint as E;
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const WEBHOOK_METHODS: &[Method] = &[Method::GET, Method::PUT, Method::DELETE];

    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let (area, version, rest) = match segments.as_slice() {
        [area, version, rest @ ..] => (*area, *version, rest),
        _ => return None,
    };
    if version.len() != 6 || !version.bytes().all(|b| b.is_ascii_digit()) || version < "202309" {
        return None;
    }
    let id_ok = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    let found = match (area, rest) {
        ("authorization", ["shops"]) => (E::AuthorizedShops, GET, Refused),
        ("seller", ["shops"]) => (E::SellerShops, GET, Refused),
        ("seller", ["permissions"]) => (E::SellerPermissions, GET, Refused),
        ("order", ["orders", "search"]) => (E::OrderSearch, POST, Required),
        ("order", ["orders"]) => (E::OrderDetail, GET, Required),
        ("fulfillment", ["packages", "search"]) => (E::PackageSearch, POST, Required),
        ("fulfillment", ["packages", id]) if id_ok(id) => {
            (E::PackageDetail((*id).to_owned()), GET, Required)
        }
        ("fulfillment", ["packages", id, "ship"]) if id_ok(id) => {
            (E::PackageShip((*id).to_owned()), POST, Required)
        }
        ("fulfillment", ["packages", id, "shipping_documents"]) if id_ok(id) => {
            (E::ShippingDocuments((*id).to_owned()), GET, Required)
        }
        ("fulfillment", ["orders", id, "tracking"]) if id_ok(id) => {
            (E::OrderTracking((*id).to_owned()), GET, Required)
        }
        ("product", ["products", "search"]) => (E::ProductSearch, POST, Required),
        ("product", ["products", id]) if id_ok(id) => {
            (E::ProductDetail((*id).to_owned()), GET, Required)
        }
        ("product", ["images", "upload"]) => (E::ImageUpload, POST, Refused),
        ("return_refund", ["returns", "search"]) => (E::ReturnSearch, POST, Required),
        ("return_refund", ["cancellations", "search"]) => (E::CancellationSearch, POST, Required),
        ("finance", ["statements"]) => (E::Statements, GET, Required),
        ("finance", ["payments"]) => (E::Payments, GET, Required),
        ("event", ["webhooks"]) => (E::Webhooks, WEBHOOK_METHODS, Required),
        _ => return None,
    };
    Some(found)
}

/// Answers one request (API or token host).
pub(crate) fn answer(
    state: &SandboxState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let mut inner = state.inner.lock();
    let path = uri.path();
    if path == tokens::GET_PATH || path == tokens::REFRESH_PATH {
        return tokens::answer(state, &mut inner, method, uri);
    }
    let Some((endpoint, methods, rule)) = route(path) else {
        return Reply::error(
            RejectReason::UnknownPath,
            StatusCode::NOT_FOUND,
            reply::UNKNOWN_PATH,
            "Invalid path: the API does not exist.",
        );
    };
    if !methods.contains(method) {
        return Reply::error(
            RejectReason::WrongMethod,
            StatusCode::METHOD_NOT_ALLOWED,
            reply::WRONG_METHOD,
            "Method not allowed for this API.",
        );
    }
    let caller = match check::verify(state, &inner, rule, uri, headers, body) {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };
    if let Some(rate) = inner.rate {
        let now = Instant::now();
        let bucket = inner
            .buckets
            .entry(caller.shop_id.clone())
            .or_insert_with(|| Bucket::full(rate, now));
        if let Err(wait) = bucket.take(rate, now) {
            return Reply::throttled(retry_after_secs(wait));
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = state.now();
    handle(
        &mut inner,
        &caller,
        endpoint,
        method,
        content_type,
        body,
        now,
    )
}

/// The JSON body of a search or update call; empty means `{}`.
fn json_body(body: &[u8]) -> Result<Value, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Reply::invalid(
            "Invalid request body: expected a JSON object.",
        )),
    }
}

/// Applies the `*_ge` / `*_lt` time filters TikTok's search bodies take.
fn in_time_window(item: &Value, filters: &Value, field: &str) -> bool {
    let t = int(item, field);
    let ge = filters.get(format!("{field}_ge")).and_then(Value::as_i64);
    let lt = filters.get(format!("{field}_lt")).and_then(Value::as_i64);
    ge.is_none_or(|ge| t >= ge) && lt.is_none_or(|lt| t < lt)
}

/// Sorts by `sort_field` (one of `fields`, default the first) and `sort_order` (default DESC).
fn sort(items: &mut [Value], params: &Params, fields: &[&str]) -> Result<(), Reply> {
    let field = match params.get("sort_field") {
        None => fields.first().copied().unwrap_or("create_time"),
        Some(f) if fields.contains(&f) => f,
        // Like TikTok's own parameter errors, the message repeats what it was sent: a caller's
        // input (which may be buyer data) comes back in the envelope's free-text `message`.
        Some(other) => {
            return Err(Reply::invalid(&format!(
                "sort_field is invalid: {other}. Use one of {}.",
                fields.join(", ")
            )));
        }
    };
    let descending = match params.get("sort_order") {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(_) => return Err(Reply::invalid("sort_order must be ASC or DESC.")),
    };
    // Stable, with the ID as a tie-break so pages never overlap.
    items.sort_by(|a, b| {
        let order = int(a, field)
            .cmp(&int(b, field))
            .then_with(|| text(a, "id").cmp(text(b, "id")));
        if descending { order.reverse() } else { order }
    });
    Ok(())
}

fn not_owned() -> Reply {
    Reply::error(
        RejectReason::NotFound,
        StatusCode::OK,
        reply::NOT_OWNED,
        "The order or package does not belong to the current seller.",
    )
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reply) => return reply,
        }
    };
}

fn handle(
    inner: &mut Inner,
    caller: &Caller,
    endpoint: Endpoint,
    method: &Method,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Reply {
    let params = &caller.params;
    let Some(shop) = inner.shop(&caller.shop_id).cloned() else {
        return not_owned();
    };
    let Inner { data, rng, .. } = inner;
    let Some(data) = data.get_mut(&caller.shop_id) else {
        return not_owned();
    };
    match endpoint {
        Endpoint::AuthorizedShops => Reply::ok(json!({"shops": [{
            "id": shop.id, "name": shop.name, "region": shop.region,
            "seller_type": "LOCAL", "cipher": shop.cipher, "code": shop.code
        }]})),
        Endpoint::SellerShops => {
            Reply::ok(json!({"shops": [{"id": shop.id, "region": shop.region}]}))
        }
        Endpoint::SellerPermissions => Reply::ok(json!({"permissions": ["MANAGE_GLOBAL_PRODUCT"]})),
        Endpoint::OrderSearch => {
            let filters = tri!(json_body(body));
            let page = tri!(page(params, List::Orders));
            let status = filters.get("order_status").and_then(Value::as_str);
            let mut found: Vec<Value> = data
                .orders
                .iter()
                .filter(|o| status.is_none_or(|s| text(o, "status") == s))
                .filter(|o| in_time_window(o, &filters, "create_time"))
                .filter(|o| in_time_window(o, &filters, "update_time"))
                .cloned()
                .collect();
            tri!(sort(&mut found, params, &["create_time", "update_time"]));
            let total = found.len();
            let (orders, next) = paginate(&found, List::Orders, page);
            Reply::ok(json!({"orders": orders, "next_page_token": next, "total_count": total}))
        }
        Endpoint::OrderDetail => {
            let Some(ids) = params.get("ids").filter(|s| !s.is_empty()) else {
                return Reply::invalid("ids is required.");
            };
            let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
            if ids.len() > MAX_ORDER_IDS || ids.iter().any(|id| id.is_empty()) {
                return Reply::invalid("ids must hold 1 to 50 order IDs.");
            }
            let orders: Vec<Value> = ids
                .iter()
                .filter_map(|id| data.order(id).cloned())
                .collect();
            if orders.is_empty() {
                return not_owned();
            }
            Reply::ok(json!({"orders": orders}))
        }
        Endpoint::PackageSearch => {
            let filters = tri!(json_body(body));
            let page = tri!(page(params, List::Packages));
            let status = filters.get("package_status").and_then(Value::as_str);
            let mut found: Vec<Value> = data
                .packages
                .iter()
                .filter(|p| status.is_none_or(|s| text(p, "package_status") == s))
                .filter(|p| in_time_window(p, &filters, "create_time"))
                .filter(|p| in_time_window(p, &filters, "update_time"))
                .map(package_summary)
                .collect();
            tri!(sort(&mut found, params, &["create_time", "update_time"]));
            let total = found.len();
            let (packages, next) = paginate(&found, List::Packages, page);
            Reply::ok(json!({"packages": packages, "next_page_token": next, "total_count": total}))
        }
        Endpoint::PackageDetail(id) => match data.package(&id) {
            Some(p) => Reply::ok(p.clone()),
            None => not_owned(),
        },
        Endpoint::PackageShip(id) => {
            let request = tri!(json_body(body));
            let tracking = request["self_shipment"]["tracking_number"].as_str();
            if data.package(&id).is_none() {
                return not_owned();
            }
            match data.ship(rng, &id, tracking, now) {
                Ok(()) => Reply::ok(json!({})),
                Err(()) => Reply::error(
                    RejectReason::NotFound,
                    StatusCode::OK,
                    reply::ALREADY_SHIPPED,
                    "Package has been shipped. Please not ship the package again.",
                ),
            }
        }
        Endpoint::ShippingDocuments(id) => {
            let Some(package) = data.package(&id) else {
                return not_owned();
            };
            match params.get("document_type") {
                Some("SHIPPING_LABEL" | "PACKING_SLIP" | "SHIPPING_LABEL_AND_PACKING_SLIP") => {}
                _ => return Reply::invalid("document_type is invalid."),
            }
            let tracking = text(package, "tracking_number");
            if tracking.is_empty() {
                return Reply::error(
                    RejectReason::NotFound,
                    StatusCode::OK,
                    11_034_037,
                    "The shipping document is still being generated by the logistics provider.",
                );
            }
            let key = inner_token(rng);
            Reply::ok(json!({
                "doc_url": format!("https://sandbox-docs.tiktokshop.invalid/label/{id}?sig={key}"),
                "tracking_number": tracking
            }))
        }
        Endpoint::OrderTracking(id) => {
            let Some(order) = data.order(&id) else {
                return not_owned();
            };
            Reply::ok(json!({"tracking": tracking_events(order)}))
        }
        Endpoint::ProductSearch => {
            let filters = tri!(json_body(body));
            let page = tri!(page(params, List::Products));
            let status = filters.get("status").and_then(Value::as_str);
            let found: Vec<Value> = data
                .products
                .iter()
                .filter(|p| status.is_none_or(|s| s == "ALL" || text(p, "status") == s))
                .map(|p| {
                    json!({"id": p["id"], "title": p["title"], "status": p["status"], "skus": p["skus"],
                        "sales_regions": p["sales_regions"], "create_time": p["create_time"],
                        "update_time": p["update_time"]})
                })
                .collect();
            let total = found.len();
            let (products, next) = paginate(&found, List::Products, page);
            Reply::ok(json!({"products": products, "next_page_token": next, "total_count": total}))
        }
        Endpoint::ProductDetail(id) => match data.product(&id) {
            Some(p) => Reply::ok(p.clone()),
            None => Reply::error(
                RejectReason::NotFound,
                StatusCode::OK,
                12_052_260,
                "The product ID does not exist",
            ),
        },
        Endpoint::ImageUpload => upload(data, content_type, body),
        Endpoint::ReturnSearch => search_simple(
            &data.returns,
            params,
            body,
            List::Returns,
            "return_orders",
            "return_status",
        ),
        Endpoint::CancellationSearch => search_simple(
            &data.cancellations,
            params,
            body,
            List::Cancellations,
            "cancellations",
            "cancel_status",
        ),
        Endpoint::Statements => list_by_time(
            &data.statements,
            params,
            List::Statements,
            "statements",
            "statement_time",
        ),
        Endpoint::Payments => list_by_time(
            &data.payments,
            params,
            List::Payments,
            "payments",
            "create_time",
        ),
        Endpoint::Webhooks => webhooks(data, method, body, now),
    }
}

fn inner_token(rng: &mut rand::rngs::StdRng) -> String {
    use rand::Rng;
    (0..24)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn package_summary(p: &Value) -> Value {
    json!({
        "id": p["package_id"],
        "orders": p["orders"],
        "create_time": p["create_time"],
        "update_time": p["update_time"],
        "status": p["package_status"],
        "tracking_number": p["tracking_number"],
        "shipping_provider_name": p["shipping_provider_name"],
        "shipping_provider_id": p["shipping_provider_id"],
        "order_line_item_ids": p["order_line_item_ids"]
    })
}

fn tracking_events(order: &Value) -> Vec<Value> {
    let created = int(order, "create_time") * 1000;
    let steps: &[&str] = match text(order, "status") {
        "AWAITING_COLLECTION" => &["Shipping label created"],
        "IN_TRANSIT" => &[
            "Shipping label created",
            "Picked up by carrier",
            "In transit",
        ],
        "DELIVERED" | "COMPLETED" => &[
            "Shipping label created",
            "Picked up by carrier",
            "In transit",
            "Your package was delivered!",
        ],
        _ => &[],
    };
    // Newest first, as TikTok lists them.
    steps
        .iter()
        .enumerate()
        .rev()
        .map(|(i, d)| json!({"description": d, "update_time_millis": created + (i as i64 + 1) * 3_600_000}))
        .collect()
}

fn search_simple(
    items: &[Value],
    params: &Params,
    body: &[u8],
    list: List,
    key: &str,
    status_field: &str,
) -> Reply {
    let filters = tri!(json_body(body));
    let page = tri!(page(params, list));
    let order_ids: Option<Vec<&str>> = filters
        .get("order_ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect());
    let status = filters.get(status_field).and_then(Value::as_array);
    let mut found: Vec<Value> = items
        .iter()
        .filter(|i| {
            order_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&text(i, "order_id")))
        })
        .filter(|i| {
            status.is_none_or(|s| s.iter().any(|v| v.as_str() == Some(text(i, status_field))))
        })
        .filter(|i| in_time_window(i, &filters, "create_time"))
        .filter(|i| in_time_window(i, &filters, "update_time"))
        .cloned()
        .collect();
    tri!(sort(&mut found, params, &["create_time", "update_time"]));
    let total = found.len();
    let (page_items, next) = paginate(&found, list, page);
    Reply::ok(json!({key: page_items, "next_page_token": next, "total_count": total}))
}

/// Finance lists: time filters in the query, `sort_field` required.
fn list_by_time(items: &[Value], params: &Params, list: List, key: &str, field: &str) -> Reply {
    let page = tri!(page(params, list));
    if params.get("sort_field").is_none() {
        return Reply::invalid("sort_field is required.");
    }
    let bound = |name: &str| -> Result<Option<i64>, Reply> {
        params
            .get(&format!("{field}_{name}"))
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Reply::invalid("time filter is invalid."))
            })
            .transpose()
    };
    let ge = tri!(bound("ge"));
    let lt = tri!(bound("lt"));
    let mut found: Vec<Value> = items
        .iter()
        .filter(|i| {
            ge.is_none_or(|ge| int(i, field) >= ge) && lt.is_none_or(|lt| int(i, field) < lt)
        })
        .cloned()
        .collect();
    tri!(sort(&mut found, params, &[field]));
    let (page_items, next) = paginate(&found, list, page);
    Reply::ok(json!({key: page_items, "next_page_token": next}))
}

fn upload(data: &mut ShopData, content_type: &str, body: &[u8]) -> Reply {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Reply::invalid("content-type must be multipart/form-data.");
    }
    let Some(parts) = multipart::parse(content_type, body) else {
        return Reply::invalid(
            "Invalid upload file. Please ensure you are passing the correct file.",
        );
    };
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "data" && !p.data.is_empty())
    else {
        return Reply::invalid("Invalid upload file: the `data` part is missing or empty.");
    };
    let use_case = parts
        .iter()
        .find(|p| p.name == "use_case")
        .and_then(|p| std::str::from_utf8(p.data).ok())
        .unwrap_or("MAIN_IMAGE")
        .to_owned();
    data.uploads += 1;
    let uri = format!(
        "tos-maliva-i-o3syd03w52-us/sbx{:08x}{:08x}",
        data.uploads,
        file.data.len()
    );
    Reply::ok(json!({
        "uri": uri,
        "url": format!("https://p-oec-va.ibyteimg.com/{uri}"),
        "height": 720,
        "width": 720,
        "use_case": use_case
    }))
}

fn webhooks(data: &mut ShopData, method: &Method, body: &[u8], now: i64) -> Reply {
    if *method == Method::GET {
        let list: Vec<Value> = data
            .webhooks
            .iter()
            .map(|(event_type, w)| {
                json!({"event_type": event_type, "address": w.address,
                    "create_time": w.create_time, "update_time": w.update_time})
            })
            .collect();
        return Reply::ok(json!({"webhooks": list, "total_count": data.webhooks.len()}));
    }
    let request = tri!(json_body(body));
    let Some(event_type) = request
        .get("event_type")
        .and_then(Value::as_str)
        .filter(|e| EVENT_TYPES.contains(e))
    else {
        return Reply::invalid("event_type is missing or unknown.");
    };
    if *method == Method::DELETE {
        data.webhooks.remove(event_type);
        return Reply::ok(json!({}));
    }
    let Some(address) = request
        .get("address")
        .and_then(Value::as_str)
        .filter(|a| a.starts_with("https://") && a.len() > "https://".len())
    else {
        return Reply::invalid("address must be an https URL.");
    };
    let create_time = data.webhooks.get(event_type).map_or(now, |w| w.create_time);
    data.webhooks.insert(
        event_type.to_owned(),
        Webhook {
            address: address.to_owned(),
            create_time,
            update_time: now,
        },
    );
    Reply::ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_paths_and_versions() {
        let r = |p: &str| route(p).map(|(e, m, c)| (e, m.to_vec(), c));
        assert_eq!(
            r("/order/202309/orders/search"),
            Some((
                Endpoint::OrderSearch,
                vec![Method::POST],
                CipherRule::Required
            ))
        );
        assert_eq!(
            r("/order/202507/orders").map(|x| x.0),
            Some(Endpoint::OrderDetail)
        );
        assert_eq!(
            r("/fulfillment/202309/packages/1153/ship").map(|x| x.0),
            Some(Endpoint::PackageShip("1153".into()))
        );
        assert_eq!(
            r("/product/202309/images/upload").map(|x| x.2),
            Some(CipherRule::Refused)
        );
        assert_eq!(
            r("/seller/202309/shops").map(|x| x.2),
            Some(CipherRule::Refused)
        );
        assert_eq!(
            r("/order/202212/orders"),
            None,
            "versions before 202309 are gone"
        );
        assert_eq!(r("/order/2023/orders"), None);
        assert_eq!(r("/nope/202309/x"), None);
        assert_eq!(r("/fulfillment/202309/packages/a%2Fb"), None);
        assert_eq!(r("/"), None);
    }
}
