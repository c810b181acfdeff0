//! Made-up personal data for sandbox orders: names, phones, e-mails, addresses, CPF numbers,
//! buyer messages. Drawn from a seeded RNG so every run with the same seed gives the same people.
//! None of it belongs to a real person; it exists so masking and redaction have something real
//! to hide.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Mia", "Lucas",
    "Isabella", "Mateus", "Ana", "Gabriel", "Beatriz", "Harper", "Jack", "Chloe", "Aarav", "Yuki",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Silva", "Santos",
    "Oliveira", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Walker", "Hughes",
];
const LOCAL_FIRST: &[&str] = &["ジョン", "さくら", "ひろし", "ゆき"];
const LOCAL_LAST: &[&str] = &["ドゥ", "たなか", "すずき", "さとう"];
const STREETS: &[&str] = &[
    "Coleman Ave",
    "Bristol Pkwy",
    "Maple Street",
    "Oak Lane",
    "High Street",
    "Station Road",
    "Rua Augusta",
    "Avenida Paulista",
    "Church Lane",
    "Sunset Blvd",
];
const BUYER_MESSAGES: &[&str] = &[
    "Please ship asap!",
    "Leave the parcel with my neighbour at number 12 if I am out.",
    "Gift wrap please, it's for my mum's birthday.",
    "Call me on arrival, the doorbell is broken.",
    "Please don't ring, baby sleeping.",
    "",
];
const DROP_OFF: &[&str] = &["Front Door", "Back Door", "Reception", "Parcel Locker"];

/// A shop's region decides address shapes, phone formats and whether there is a CPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    Us,
    Gb,
    Br,
}

impl Region {
    pub(crate) fn parse(code: &str) -> Self {
        match code {
            "GB" => Self::Gb,
            "BR" => Self::Br,
            _ => Self::Us,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Us => "US",
            Self::Gb => "GB",
            Self::Br => "BR",
        }
    }

    pub(crate) fn currency(self) -> &'static str {
        match self {
            Self::Us => "USD",
            Self::Gb => "GBP",
            Self::Br => "BRL",
        }
    }

    fn country(self) -> &'static str {
        match self {
            Self::Us => "United States",
            Self::Gb => "United Kingdom",
            Self::Br => "Brazil",
        }
    }
}

/// One made-up buyer with an address.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub first_name: String,
    pub last_name: String,
    pub first_name_local_script: String,
    pub last_name_local_script: String,
    pub email: String,
    pub phone: String,
    pub street_line: String,
    pub unit: String,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub region: Region,
    pub drop_off: String,
    pub buyer_message: String,
    pub user_id: String,
    pub cpf: Option<String>,
}

impl Person {
    pub(crate) fn generate(rng: &mut StdRng, region: Region) -> Self {
        let first = pick(rng, FIRST_NAMES);
        let last = pick(rng, LAST_NAMES);
        let (city, state, postal_code) = match region {
            Region::Us => {
                let (c, s) = pick_pair(
                    rng,
                    &[
                        ("San Jose", "CA"),
                        ("Austin", "TX"),
                        ("Seattle", "WA"),
                        ("Columbus", "OH"),
                    ],
                );
                (c, s, format!("{:05}", rng.random_range(10_000..99_999)))
            }
            Region::Gb => {
                let (c, s) = pick_pair(
                    rng,
                    &[
                        ("Preston", "Lancashire"),
                        ("Leeds", "West Yorkshire"),
                        ("Bristol", "Bristol"),
                    ],
                );
                let letters = ["PR", "LS", "BS", "M", "SW"];
                let outward = format!("{}{}", pick(rng, &letters), rng.random_range(1..30));
                let inward = format!(
                    "{}{}{}",
                    rng.random_range(1..10),
                    (b'A' + rng.random_range(0..26u8)) as char,
                    (b'A' + rng.random_range(0..26u8)) as char
                );
                (c, s, format!("{outward} {inward}"))
            }
            Region::Br => {
                let (c, s) = pick_pair(
                    rng,
                    &[
                        ("São Paulo", "SP"),
                        ("Rio de Janeiro", "RJ"),
                        ("Curitiba", "PR"),
                    ],
                );
                (
                    c,
                    s,
                    format!(
                        "{:05}-{:03}",
                        rng.random_range(1_000..99_999),
                        rng.random_range(0..1000)
                    ),
                )
            }
        };
        let phone = match region {
            Region::Us => format!(
                "(+1){}-{:03}-{:04}",
                rng.random_range(201..990),
                rng.random_range(200..999),
                rng.random_range(0..10_000)
            ),
            Region::Gb => format!(
                "(+44)7{:03} {:06}",
                rng.random_range(100..999),
                rng.random_range(0..1_000_000)
            ),
            Region::Br => format!(
                "(+55)11 9{:04}-{:04}",
                rng.random_range(0..10_000),
                rng.random_range(0..10_000)
            ),
        };
        let email = format!(
            "{}.{}{}@example-mail.com",
            first.to_lowercase(),
            last.to_lowercase(),
            rng.random_range(1..999)
        );
        Self {
            street_line: format!("{} {}", rng.random_range(1..9999), pick(rng, STREETS)),
            unit: format!("Unit {}", rng.random_range(1..300)),
            first_name_local_script: pick(rng, LOCAL_FIRST).to_owned(),
            last_name_local_script: pick(rng, LOCAL_LAST).to_owned(),
            drop_off: pick(rng, DROP_OFF).to_owned(),
            buyer_message: pick(rng, BUYER_MESSAGES).to_owned(),
            user_id: digits(rng, "70", 19),
            cpf: (region == Region::Br).then(|| cpf(rng)),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            email,
            phone,
            city: city.to_owned(),
            state: state.to_owned(),
            postal_code,
            region,
        }
    }

    pub(crate) fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }

    pub(crate) fn full_address(&self) -> String {
        format!(
            "{}, {}, {}, {} {}",
            self.street_line, self.unit, self.city, self.state, self.postal_code
        )
    }

    /// TikTok's `recipient_address` object (also used for package sender/recipient).
    pub(crate) fn address_json(&self) -> serde_json::Value {
        serde_json::json!({
            "full_address": self.full_address(),
            "phone_number": self.phone,
            "name": self.full_name(),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "first_name_local_script": self.first_name_local_script,
            "last_name_local_script": self.last_name_local_script,
            "region_code": self.region.code(),
            "postal_code": self.postal_code,
            "post_town": self.city,
            "address_line1": self.street_line,
            "address_line2": self.unit,
            "address_line3": "",
            "address_line4": "",
            "address_detail": self.unit,
            "district_info": [
                {"address_level_name": "Country", "address_name": self.region.country(), "address_level": "L0"},
                {"address_level_name": "State", "address_name": self.state, "address_level": "L1"},
                {"address_level_name": "City", "address_name": self.city, "address_level": "L2"}
            ],
            "delivery_preferences": {"drop_off_location": self.drop_off}
        })
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

fn pick_pair(
    rng: &mut StdRng,
    items: &[(&'static str, &'static str)],
) -> (&'static str, &'static str) {
    items.choose(rng).copied().unwrap_or(("", ""))
}

/// A decimal ID of `len` digits starting with `prefix`, as TikTok's 64-bit IDs look.
pub(crate) fn digits(rng: &mut StdRng, prefix: &str, len: usize) -> String {
    let mut out = String::with_capacity(len);
    out.push_str(prefix);
    while out.len() < len {
        out.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    out
}

/// A tracking number in one of the carriers' shapes.
pub(crate) fn tracking_number(rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => digits(rng, "TT", 18),
        1 => format!("1Z{}", digits(rng, "", 16)),
        _ => format!("JX{}", digits(rng, "", 10)),
    }
}

/// A Brazilian CPF with valid check digits, formatted `123.456.789-09`.
pub(crate) fn cpf(rng: &mut StdRng) -> String {
    let mut d: Vec<u32> = (0..9).map(|_| rng.random_range(0..10)).collect();
    for len in [9usize, 10] {
        let sum: u32 = d
            .iter()
            .enumerate()
            .map(|(i, v)| v * (len as u32 + 1 - i as u32))
            .sum();
        let check = (sum * 10) % 11 % 10;
        d.push(check);
    }
    let s: String = d.iter().map(|v| char::from(b'0' + *v as u8)).collect();
    format!("{}.{}.{}-{}", &s[0..3], &s[3..6], &s[6..9], &s[9..11])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn same_seed_same_people() {
        let a = Person::generate(&mut StdRng::seed_from_u64(7), Region::Us);
        let b = Person::generate(&mut StdRng::seed_from_u64(7), Region::Us);
        assert_eq!(a.full_address(), b.full_address());
        assert_eq!(a.email, b.email);
        let c = Person::generate(&mut StdRng::seed_from_u64(8), Region::Us);
        assert_ne!((a.email, a.phone), (c.email, c.phone));
    }

    #[test]
    fn cpf_check_digits_are_valid() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let text = cpf(&mut rng);
            let d: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
            assert_eq!(d.len(), 11);
            for len in [9usize, 10] {
                let sum: u32 = (0..len).map(|i| d[i] * (len as u32 + 1 - i as u32)).sum();
                assert_eq!((sum * 10) % 11 % 10, d[len], "{text}");
            }
        }
    }

    #[test]
    fn brazilian_buyers_have_a_cpf_others_do_not() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(Person::generate(&mut rng, Region::Br).cpf.is_some());
        assert!(Person::generate(&mut rng, Region::Gb).cpf.is_none());
    }
}
