//! The field catalogue: which JSON field names are personal (and how each is replaced), which
//! objects are *sealed* (everything inside them is hidden unless explicitly allow-listed there),
//! and which fields are known to be safe to log. Built from TikTok Shop's order, package,
//! customer-service and warehouse data; extended from `gateway.yaml`.
//!
//! The default is to hide: logs show only allow-listed fields, and under sealed objects
//! (addresses, buyers, conversation participants) a new TikTok field is hidden in responses too.

use std::collections::{HashMap, HashSet};

use super::detectors::SECRET_KEYS;
use super::error::PrivacyError;
use super::kind::PiiKind;

/// How a personal value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Replaced by a fixed mask: nothing about the value remains.
    Hide,
    /// Replaced by a keyed pseudonym (`pii:...`): investigators can correlate, nobody can read.
    Pseudonymise,
}

/// What the catalogue says about a field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRule {
    /// Non-personal: logs may show it (ids, statuses, timestamps, amounts...).
    Safe,
    /// Personal wherever it appears; the whole value (and anything nested in it) is replaced.
    Personal { kind: PiiKind, treatment: Treatment },
    /// An object (or array of objects) whose members are all hidden unless sealed-safe.
    Sealed,
    /// Free text written by TikTok (the envelope `message`): shown, except for the personal data
    /// the free-text detectors and `key: value` pairs find in it (an error that echoes buyer
    /// data).
    FreeText,
    /// A product identifier (GTIN/EAN/UPC/ISBN): a value with a valid GTIN check digit is a
    /// barcode, not a phone number; anything else is scanned like an unknown field.
    ProductCode,
    /// The seller's own configuration (webhook subscriptions): everything under it is
    /// non-personal, even names that are sealed elsewhere (a webhook's `address` is its URL).
    SafeTree,
}

/// Where a JSON value sits, as far as masking is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    /// Under a safe field: shown as is.
    Keep,
    /// Under a field the catalogue does not know, outside any sealed object.
    Unknown,
    /// Inside a sealed object: members are hidden unless sealed-safe.
    Sealed,
    /// A personal value: replaced (recursively for containers).
    Personal { kind: PiiKind, treatment: Treatment },
    /// See [`FieldRule::FreeText`].
    FreeText,
    /// See [`FieldRule::ProductCode`]; members of an identifier object (`code`, `type`) too.
    ProductCode,
    /// See [`FieldRule::SafeTree`]: shown, except fields that are personal wherever they appear.
    SafeTree,
}

/// Extensions from `gateway.yaml` (`privacy:` section). Names are JSON field names, matched
/// case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogueSettings {
    /// Personal fields hidden (masked with `***` / `[redacted]`) wherever they appear.
    pub extra_pii_fields: Vec<String>,
    /// Personal identifiers replaced by a pseudonym wherever they appear.
    pub extra_pseudonym_fields: Vec<String>,
    /// Objects whose contents are hidden except sealed-safe members.
    pub extra_sealed_objects: Vec<String>,
    /// Non-personal fields that logs may show. Cannot name a built-in personal or sealed field.
    pub extra_safe_fields: Vec<String>,
}

use PiiKind as K;
use Treatment::{Hide, Pseudonymise as Pseudo};

/// Personal wherever they appear (TIKTOK.md "PII in TikTok Shop data", plus obvious synonyms).
const PERSONAL: &[(&str, PiiKind, Treatment)] = &[
    ("buyer_email", K::Email, Pseudo),
    ("email", K::Email, Pseudo),
    ("buyer_message", K::Message, Hide),
    ("seller_note", K::Message, Hide),
    ("content", K::Message, Hide),
    ("user_id", K::UserId, Pseudo),
    ("buyer_user_id", K::UserId, Pseudo),
    ("buyer_id", K::UserId, Pseudo),
    ("im_user_id", K::UserId, Pseudo),
    ("consultation_id", K::PersonalField, Pseudo),
    ("cpf", K::Cpf, Hide),
    ("cpf_name", K::Name, Hide),
    ("payment_auth_code", K::Payment, Hide),
    ("payment_method_name", K::Payment, Hide),
    ("bank_account", K::Payment, Hide),
    ("card_number", K::PaymentCard, Hide),
    ("tracking_number", K::TrackingNumber, Pseudo),
    ("last_mile_tracking_number", K::TrackingNumber, Pseudo),
    ("return_tracking_number", K::TrackingNumber, Pseudo),
    ("doc_url", K::DocumentUrl, Hide),
    ("label_url", K::DocumentUrl, Hide),
    ("shipping_label_url", K::DocumentUrl, Hide),
    ("nickname", K::Name, Hide),
    ("buyer_nickname", K::Name, Hide),
    ("avatar", K::PersonalField, Hide),
    ("buyer_avatar", K::PersonalField, Hide),
    ("phone_number", K::Phone, Pseudo),
    ("phone", K::Phone, Pseudo),
    ("mobile", K::Phone, Pseudo),
    ("first_name", K::Name, Hide),
    ("last_name", K::Name, Hide),
    ("first_name_local_script", K::Name, Hide),
    ("last_name_local_script", K::Name, Hide),
    ("full_name", K::Name, Hide),
    ("buyer_name", K::Name, Hide),
    ("recipient_name", K::Name, Hide),
    ("contact_person", K::Name, Hide),
    ("full_address", K::Address, Hide),
    ("address_detail", K::Address, Hide),
    ("address_line1", K::Address, Hide),
    ("address_line2", K::Address, Hide),
    ("address_line3", K::Address, Hide),
    ("address_line4", K::Address, Hide),
    ("postal_code", K::Address, Hide),
    ("zipcode", K::Address, Hide),
    ("zip_code", K::Address, Hide),
    ("post_town", K::Address, Hide),
    ("drop_off_location", K::Address, Hide),
];

/// Objects whose every member is hidden unless listed in [`SEALED_SAFE`].
const SEALED: &[&str] = &[
    "recipient_address",
    "sender_address",
    "return_warehouse_address",
    "buyer_address",
    "address",
    "delivery_preferences",
    "district_info",
    "geolocation",
    "sender",
    "participants",
    "buyer",
    "buyer_info",
    "recipient",
    "contact",
    "contacts",
];

/// Free text from TikTok: the envelope's `message` (an error may repeat buyer data in it).
const FREE_TEXT: &[&str] = &["message", "msg", "error_message", "err_msg"];

/// Product identifiers: barcodes whose digits look like phone numbers to a pattern.
const PRODUCT_CODES: &[&str] = &[
    "gtin",
    "ean",
    "upc",
    "isbn",
    "barcode",
    "identifier_code",
    "identifier_codes",
    "extra_identifier_codes",
    "product_identifier_code",
];

/// The seller's own configuration, non-personal throughout.
const SAFE_TREES: &[&str] = &["webhooks"];

/// Members that stay visible inside sealed objects: labels, not values.
const SEALED_SAFE: &[&str] = &[
    "address_level_name",
    "address_level",
    "role",
    "buyer_platform",
];

/// Names that are personal when they appear as `key: value` in free log text, in addition to the
/// personal fields: outside sealed objects a JSON `name` may be a product's, but in a log line
/// there is no way to tell.
const PERSONAL_IN_TEXT: &[(&str, PiiKind)] = &[
    ("name", K::Name),
    ("address", K::Address),
    ("address_name", K::Address),
    ("city", K::Address),
    ("town", K::Address),
    ("state", K::Address),
    ("district", K::Address),
    ("distict", K::Address),
    ("region", K::Address),
    ("region_code", K::Address),
    ("street", K::Address),
    ("latitude", K::Address),
    ("longitude", K::Address),
    ("recipient_address", K::Address),
    ("sender_address", K::Address),
];

/// Non-personal fields that logs may show.
const SAFE: &[&str] = &[
    // Envelopes: TikTok responses, webhooks, the gateway's own errors.
    "code",
    "request_id",
    "data",
    "error",
    "type",
    "tts_notification_id",
    "shop_id",
    "timestamp",
    "next_page_token",
    "page_token",
    "page_size",
    "sort_field",
    "sort_order",
    "total_count",
    "total",
    "event_type",
    // Orders.
    "orders",
    "id",
    "ids",
    "order_id",
    "order_ids",
    "status",
    "order_status",
    "display_status",
    "cancellation_initiator",
    "shipping_provider",
    "shipping_provider_id",
    "shipping_provider_name",
    "rts_time",
    "rts_sla_time",
    "tts_sla_time",
    "paid_time",
    "create_time",
    "update_time",
    "cancel_order_sla_time",
    "create_time_ge",
    "create_time_lt",
    "update_time_ge",
    "update_time_lt",
    "cancel_reason",
    "cancel_user",
    "fulfillment_type",
    "packages",
    "delivery_type",
    "is_sample_order",
    "warehouse_id",
    "split_or_combine_tag",
    "split_and_combine_tag",
    "has_updated_recipient_address",
    "delivery_option_id",
    "delivery_option_name",
    "delivery_sla_time",
    "payment_card_type",
    "payment_method_code",
    "channel_entity_national_registry_id",
    "shipping_due_time",
    "shipping_type",
    "delivery_time",
    "need_upload_invoice",
    "is_cod",
    "request_cancel_time",
    "delivery_option_required_delivery_time",
    "is_buyer_request_cancel",
    "delivery_due_time",
    "collection_time",
    "collection_due_time",
    "is_on_hold_order",
    "cancel_time",
    "is_replacement_order",
    "replaced_order_id",
    "pick_up_cut_off_time",
    "fast_dispatch_sla_time",
    "commerce_platform",
    "order_type",
    "release_date",
    "handling_duration",
    "days",
    "auto_combine_group_id",
    "is_exchange_order",
    "exchange_source_order_id",
    "fast_delivery_program",
    "fulfillment_priority_level",
    "recommended_shipping_time",
    "has_multi_skus",
    "note_tag",
    "handover_method",
    "order_line_item_ids",
    "pickup_slot",
    "start_time",
    "end_time",
    "update_time_millis",
    // Money.
    "payment",
    "currency",
    "sub_total",
    "subtotal",
    "shipping_fee",
    "seller_discount",
    "platform_discount",
    "total_amount",
    "original_total_product_price",
    "original_shipping_fee",
    "shipping_fee_seller_discount",
    "shipping_fee_platform_discount",
    "shipping_fee_cofunded_discount",
    "tax",
    "small_order_fee",
    "shipping_fee_tax",
    "product_tax",
    "retail_delivery_fee",
    "buyer_service_fee",
    "handling_fee",
    "shipping_insurance_fee",
    "item_insurance_fee",
    "item_insurance_tax",
    "item_tax",
    "tax_type",
    "tax_amount",
    "tax_rate",
    "amount",
    "value",
    "exchange_rate",
    "settlement_amount",
    "reserve_amount",
    "payment_amount_before_exchange",
    "fee_amount",
    "fees",
    "adjustment_amount",
    "revenue_amount",
    "shipping_cost_amount",
    "net_sales_amount",
    "refund_amount",
    "refund_total",
    "refund_subtotal",
    "refund_shipping_fee",
    "refund_tax",
    "discount_amount",
    "product_seller_discount",
    "product_platform_discount",
    "shipping_fee_amount",
    "seller_paid_return_shipping_fee",
    "platform_paid_return_shipping_fee",
    "buyer_paid_return_shipping_fee",
    "partial_refund",
    "payments",
    "payment_id",
    "payment_status",
    "statements",
    "statement_time",
    "cod_fee",
    "cod_fee_amount",
    "cod_fee_net_amount",
    "unit_price",
    "sale_price",
    "original_price",
    "list_price",
    "price",
    "pfand_fee",
    "gift_retail_price",
    // Line items, SKUs, products.
    "line_items",
    "sku_id",
    "sku_ids",
    "combined_listing_skus",
    "sku_count",
    "product_id",
    "seller_sku",
    "seller_skus",
    "external_sku_id",
    "local_sku_id",
    "global_sku_id",
    "external_product_id",
    "global_product_id",
    "product_name",
    "sku_name",
    "sku_image",
    "sku_type",
    "package_id",
    "package_status",
    "is_gift",
    "handling_duration_days",
    "is_dangerous_good",
    "needs_prescription",
    "skus",
    "quantity",
    "image_url",
    "products",
    "product_status",
    "title",
    "categories",
    "brand",
    "weight",
    "dimension",
    "length",
    "width",
    "height",
    "unit",
    "package_dimensions",
    "package_weight",
    // Packages, fulfilment, insurance.
    "package_ids",
    "insurance",
    "is_purchased",
    "coverage_amount",
    "is_claim_eligible",
    "claim_status",
    "tracking",
    // Returns and cancellations.
    "return_orders",
    "return_id",
    "return_type",
    "return_status",
    "arbitration_status",
    "return_reason",
    "return_reason_text",
    "shipment_type",
    "return_provider_name",
    "return_provider_id",
    "pre_return_id",
    "next_return_id",
    "can_buyer_keep_item",
    "seller_next_action_response",
    "action",
    "deadline",
    "return_line_items",
    "return_line_item_id",
    "order_line_item_id",
    "return_shipping_document_type",
    "return_method",
    "is_combined_return",
    "combined_return_id",
    "seller_proposed_return_type",
    "buyer_rejected_partial_refund",
    "cancellations",
    "cancel_id",
    "cancel_type",
    "cancel_status",
    "cancel_reason_text",
    "cancel_line_items",
    "cancel_line_item_id",
    // Customer service (structure only; content and people are personal/sealed).
    "conversations",
    "conversation_id",
    "participant_count",
    "can_send_message",
    "unread_count",
    "latest_message",
    "messages",
    "message_id",
    "is_visible",
    "index",
    "unsupported_msg_tips",
    // Warehouses, shops, authorisation (names of the seller's own entities, not buyers).
    "warehouses",
    "entity_id",
    "effect_status",
    "sub_type",
    "is_default",
    "shops",
    "seller_type",
    "permissions",
];

/// The compiled catalogue: one hash lookup per field name.
#[derive(Debug, Clone)]
pub struct FieldCatalogue {
    rules: HashMap<Box<str>, FieldRule>,
    sealed_safe: HashSet<Box<str>>,
    /// Keys whose values are personal in free text, with the treatment to apply.
    text_keys: HashMap<Box<str>, (PiiKind, Treatment)>,
}

impl FieldCatalogue {
    /// The built-in TikTok catalogue extended by `settings`. Refuses declaring a built-in personal
    /// or sealed field safe: an allow-list entry must never unmask personal data.
    pub fn new(settings: &CatalogueSettings) -> Result<Self, PrivacyError> {
        let mut rules: HashMap<Box<str>, FieldRule> = HashMap::new();
        for &name in SAFE {
            rules.insert(name.into(), FieldRule::Safe);
        }
        for &name in SEALED {
            rules.insert(name.into(), FieldRule::Sealed);
        }
        for (names, rule) in [
            (FREE_TEXT, FieldRule::FreeText),
            (PRODUCT_CODES, FieldRule::ProductCode),
            (SAFE_TREES, FieldRule::SafeTree),
        ] {
            for &name in names {
                rules.insert(name.into(), rule);
            }
        }
        for &(name, kind, treatment) in PERSONAL {
            rules.insert(name.into(), FieldRule::Personal { kind, treatment });
        }
        // Credentials are hidden wherever they appear as a field, as in free text.
        for &name in SECRET_KEYS {
            rules.entry(name.into()).or_insert(FieldRule::Personal {
                kind: PiiKind::Secret,
                treatment: Hide,
            });
        }
        for name in &settings.extra_safe_fields {
            let name = normalise(name)?;
            match rules.get(name.as_str()) {
                // Free text is scanned because it may carry personal data: not safe either.
                Some(FieldRule::Personal { .. } | FieldRule::Sealed | FieldRule::FreeText) => {
                    return Err(PrivacyError::SafeFieldIsPersonal(name));
                }
                _ => {
                    rules.insert(name.into(), FieldRule::Safe);
                }
            }
        }
        for name in &settings.extra_sealed_objects {
            rules.insert(normalise(name)?.into(), FieldRule::Sealed);
        }
        let extra_personal = settings
            .extra_pii_fields
            .iter()
            .map(|n| (n, Treatment::Hide))
            .chain(
                settings
                    .extra_pseudonym_fields
                    .iter()
                    .map(|n| (n, Treatment::Pseudonymise)),
            );
        for (name, treatment) in extra_personal {
            rules.insert(
                normalise(name)?.into(),
                FieldRule::Personal {
                    kind: PiiKind::PersonalField,
                    treatment,
                },
            );
        }
        let sealed_safe = SEALED_SAFE.iter().map(|&n| Box::from(n)).collect();

        let mut text_keys: HashMap<Box<str>, (PiiKind, Treatment)> = PERSONAL_IN_TEXT
            .iter()
            .map(|&(n, k)| (Box::from(n), (k, Treatment::Hide)))
            .collect();
        for (name, rule) in &rules {
            match *rule {
                FieldRule::Personal { kind, treatment } => {
                    text_keys.insert(name.clone(), (kind, treatment));
                }
                FieldRule::Sealed => {
                    text_keys
                        .entry(name.clone())
                        .or_insert((PiiKind::PersonalField, Treatment::Hide));
                }
                FieldRule::Safe
                | FieldRule::FreeText
                | FieldRule::ProductCode
                | FieldRule::SafeTree => {}
            }
        }
        Ok(Self {
            rules,
            sealed_safe,
            text_keys,
        })
    }

    /// The rule for a field name, if the catalogue knows it.
    pub fn rule(&self, name: &str) -> Option<FieldRule> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.rules.get(name.to_ascii_lowercase().as_str()).copied()
        } else {
            self.rules.get(name).copied()
        }
    }

    /// The context of the value of member `key` in an object whose own context is `parent`.
    pub fn child(&self, parent: Ctx, key: &str) -> Ctx {
        if let Ctx::Personal { .. } = parent {
            return parent;
        }
        match self.rule(key) {
            Some(FieldRule::Personal { kind, treatment }) => Ctx::Personal { kind, treatment },
            // Below a safe tree or an identifier object, only personal names change anything.
            _ if matches!(parent, Ctx::SafeTree | Ctx::ProductCode) => parent,
            Some(FieldRule::Sealed) => Ctx::Sealed,
            _ if parent == Ctx::Sealed => {
                if self.is_sealed_safe(key) {
                    Ctx::Keep
                } else {
                    Ctx::Personal {
                        kind: PiiKind::PersonalField,
                        treatment: Treatment::Hide,
                    }
                }
            }
            Some(FieldRule::Safe) => Ctx::Keep,
            Some(FieldRule::FreeText) => Ctx::FreeText,
            Some(FieldRule::ProductCode) => Ctx::ProductCode,
            Some(FieldRule::SafeTree) => Ctx::SafeTree,
            None => Ctx::Unknown,
        }
    }

    fn is_sealed_safe(&self, key: &str) -> bool {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.sealed_safe.contains(key.to_ascii_lowercase().as_str())
        } else {
            self.sealed_safe.contains(key)
        }
    }

    /// Keys treated as personal when found as `key: value` in free text.
    pub fn text_keys(&self) -> impl Iterator<Item = &str> {
        self.text_keys.keys().map(|k| &**k)
    }

    /// Kind and treatment for a free-text key (any case).
    pub fn text_rule(&self, key: &str) -> Option<(PiiKind, Treatment)> {
        self.text_keys
            .get(key.to_ascii_lowercase().as_str())
            .copied()
    }
}

/// Field names from config: trimmed, lowercase, plain identifiers only.
fn normalise(name: &str) -> Result<String, PrivacyError> {
    let n = name.trim().to_ascii_lowercase();
    let plain = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        Ok(n)
    } else {
        Err(PrivacyError::BadFieldName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> FieldCatalogue {
        FieldCatalogue::new(&CatalogueSettings::default()).expect("built-in catalogue is valid")
    }

    #[test]
    fn builtin_lists_do_not_contradict_each_other() {
        let personal: HashSet<&str> = PERSONAL.iter().map(|p| p.0).collect();
        let sealed: HashSet<&str> = SEALED.iter().copied().collect();
        let mut seen = HashSet::new();
        for s in SAFE
            .iter()
            .chain(FREE_TEXT)
            .chain(PRODUCT_CODES)
            .chain(SAFE_TREES)
        {
            assert!(
                !personal.contains(s) && !sealed.contains(s),
                "{s} is both safe and personal"
            );
            assert!(seen.insert(s), "{s} has two rules");
        }
        for s in SEALED_SAFE {
            assert!(!personal.contains(s), "{s}");
        }
    }

    #[test]
    fn classifies_tiktok_fields() {
        let c = builtin();
        let top = Ctx::Unknown;
        assert_eq!(c.child(top, "id"), Ctx::Keep);
        assert_eq!(
            c.child(top, "Buyer_Email"),
            Ctx::Personal {
                kind: K::Email,
                treatment: Pseudo
            }
        );
        assert_eq!(c.child(top, "recipient_address"), Ctx::Sealed);
        // Inside a sealed object, unknown and even normally-safe names are hidden...
        let hidden = Ctx::Personal {
            kind: K::PersonalField,
            treatment: Hide,
        };
        assert_eq!(c.child(Ctx::Sealed, "brand_new_tiktok_field"), hidden);
        assert_eq!(c.child(Ctx::Sealed, "region_code"), hidden);
        assert_eq!(c.child(Ctx::Sealed, "id"), hidden);
        // ...except labels, and nested sealed objects stay sealed.
        assert_eq!(c.child(Ctx::Sealed, "address_level_name"), Ctx::Keep);
        assert_eq!(c.child(Ctx::Sealed, "district_info"), Ctx::Sealed);
        // Everything under a personal value is personal.
        let p = Ctx::Personal {
            kind: K::Message,
            treatment: Hide,
        };
        assert_eq!(c.child(p, "id"), p);
        assert_eq!(c.child(top, "never_heard_of_it"), Ctx::Unknown);
    }

    #[test]
    fn free_text_product_codes_and_safe_trees() {
        let c = builtin();
        let top = Ctx::Unknown;
        assert_eq!(c.child(top, "message"), Ctx::FreeText);
        assert_eq!(c.child(Ctx::Keep, "MESSAGE"), Ctx::FreeText);
        // Inside a sealed object free text is hidden like anything else.
        assert!(matches!(
            c.child(Ctx::Sealed, "message"),
            Ctx::Personal { .. }
        ));
        let code = c.child(Ctx::Keep, "identifier_code");
        assert_eq!(code, Ctx::ProductCode);
        assert_eq!(c.child(code, "code"), Ctx::ProductCode);
        assert_eq!(c.child(top, "extra_identifier_codes"), Ctx::ProductCode);
        // A webhook subscription's `address` is its URL, not a postal address...
        let hooks = c.child(Ctx::Keep, "webhooks");
        assert_eq!(hooks, Ctx::SafeTree);
        assert_eq!(c.child(hooks, "address"), Ctx::SafeTree);
        // ...but a field personal everywhere stays personal there too.
        assert!(matches!(
            c.child(hooks, "buyer_email"),
            Ctx::Personal { .. }
        ));
        assert_eq!(c.child(Ctx::Keep, "address"), Ctx::Sealed);
        // Free text cannot be declared safe: it is scanned because it may echo buyer data.
        assert_eq!(
            FieldCatalogue::new(&CatalogueSettings {
                extra_safe_fields: vec!["message".into()],
                ..Default::default()
            })
            .err(),
            Some(PrivacyError::SafeFieldIsPersonal("message".into()))
        );
    }

    #[test]
    fn settings_extend_the_catalogue() {
        let c = FieldCatalogue::new(&CatalogueSettings {
            extra_pii_fields: vec!["Gift_Message".into()],
            extra_pseudonym_fields: vec!["loyalty_id".into()],
            extra_sealed_objects: vec!["pickup_contact".into()],
            extra_safe_fields: vec!["new_status_field".into()],
        })
        .expect("valid");
        assert_eq!(
            c.child(Ctx::Unknown, "gift_message"),
            Ctx::Personal {
                kind: K::PersonalField,
                treatment: Hide
            }
        );
        assert_eq!(
            c.child(Ctx::Unknown, "loyalty_id"),
            Ctx::Personal {
                kind: K::PersonalField,
                treatment: Pseudo
            }
        );
        assert_eq!(c.child(Ctx::Unknown, "pickup_contact"), Ctx::Sealed);
        assert_eq!(c.child(Ctx::Unknown, "new_status_field"), Ctx::Keep);
        assert!(c.text_keys().any(|k| k == "gift_message"));
    }

    #[test]
    fn refuses_to_declare_personal_fields_safe() {
        for name in ["buyer_email", "PHONE_NUMBER", "recipient_address"] {
            let err = FieldCatalogue::new(&CatalogueSettings {
                extra_safe_fields: vec![name.into()],
                ..Default::default()
            })
            .err();
            assert_eq!(
                err,
                Some(PrivacyError::SafeFieldIsPersonal(name.to_ascii_lowercase()))
            );
        }
        let err = FieldCatalogue::new(&CatalogueSettings {
            extra_pii_fields: vec!["bad name\"".into()],
            ..Default::default()
        })
        .err();
        assert!(matches!(err, Some(PrivacyError::BadFieldName(_))));
    }
}
