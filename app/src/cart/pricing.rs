//! Cart and order totals: exact minor-unit arithmetic, shipping waived above a threshold.

use crate::{
    config::ShopConfig,
    money::{Money, MoneyError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: Money,
    pub shipping: Money,
    pub total: Money,
}

/// Totals of lines given as (unit price, quantity). An empty cart ships for free.
pub fn totals(
    shop: &ShopConfig,
    lines: impl IntoIterator<Item = (Money, i32)>,
) -> Result<Totals, MoneyError> {
    let mut subtotal = Money::zero(shop.currency);
    let mut any = false;
    for (unit, quantity) in lines {
        subtotal = subtotal.checked_add(unit.checked_mul(i64::from(quantity))?)?;
        any = true;
    }
    let shipping_minor = if !any || subtotal.amount_minor >= shop.free_shipping_from_minor {
        0
    } else {
        shop.shipping_flat_minor
    };
    let shipping = Money::new(shipping_minor, shop.currency);
    Ok(Totals {
        subtotal,
        shipping,
        total: subtotal.checked_add(shipping)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn shop() -> ShopConfig {
        ShopConfig {
            currency: Currency::EUR,
            shipping_flat_minor: 495,
            free_shipping_from_minor: 5000,
        }
    }

    #[test]
    fn shipping_is_charged_below_the_threshold_only() {
        let eur = |m| Money::new(m, Currency::EUR);
        assert_eq!(
            totals(&shop(), [(eur(4999), 1)]).unwrap().total,
            eur(4999 + 495)
        );
        assert_eq!(totals(&shop(), [(eur(2500), 2)]).unwrap().total, eur(5000));
        assert_eq!(totals(&shop(), []).unwrap().total, eur(0));
    }

    #[test]
    fn another_currency_is_refused() {
        let usd = Money::new(100, Currency::USD);
        assert!(matches!(
            totals(&shop(), [(usd, 1)]),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    proptest! {
        #[test]
        fn total_is_subtotal_plus_shipping(lines in proptest::collection::vec((0i64..1_000_000, 1i32..1000), 0..20)) {
            let priced: Vec<_> = lines.iter().map(|(p, q)| (Money::new(*p, Currency::EUR), *q)).collect();
            let t = totals(&shop(), priced).unwrap();
            let expected: i64 = lines.iter().map(|(p, q)| p * i64::from(*q)).sum();
            prop_assert_eq!(t.subtotal.amount_minor, expected);
            prop_assert_eq!(t.total.amount_minor, t.subtotal.amount_minor + t.shipping.amount_minor);
            prop_assert!(t.shipping.amount_minor == 0 || t.subtotal.amount_minor < 5000);
        }
    }
}
