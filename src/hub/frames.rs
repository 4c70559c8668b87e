//! Frame variants: the encoded forms of a delivery that client dialects register.
//!
//! A delivery is encoded into a WebSocket frame at most once per variant, by the first
//! connection that asks for it, and the same bytes then go to every connection taking that
//! variant. What a variant means (bare event, wrapped with its stream name, microsecond times…)
//! is the registering dialect's business: the hub knows a variant only as a slot index and the
//! function that fills the slot.

use std::fmt;

use bytes::Bytes;

use super::Delivery;

/// Encodes a delivery as one complete WebSocket frame (header included).
pub type Encoder = fn(&Delivery) -> Bytes;

/// One registered variant: the slot it is cached in, and how it is encoded.
#[derive(Clone, Copy)]
pub struct FrameVariant {
    slot: u16,
    encode: Encoder,
}

impl FrameVariant {
    /// The cache slot of this variant in every [`Delivery`].
    pub fn slot(self) -> usize {
        usize::from(self.slot)
    }

    /// Encodes `delivery` in this variant (uncached; [`Delivery::frame`] caches).
    pub fn encode(self, delivery: &Delivery) -> Bytes {
        (self.encode)(delivery)
    }
}

impl PartialEq for FrameVariant {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}

impl Eq for FrameVariant {}

impl fmt::Debug for FrameVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameVariant({})", self.slot)
    }
}

/// The variants a node's dialects registered, in slot order. Complete before the hub is
/// built: [`Hub::new`](super::Hub::new) takes it, and every delivery gets one slot per variant.
#[derive(Default)]
pub struct FrameVariants {
    names: Vec<&'static str>,
}

impl FrameVariants {
    /// No variant yet.
    pub fn new() -> Self {
        FrameVariants::default()
    }

    /// Adds a variant named `name` (for diagnostics; e.g. `binance/combined`), encoded by
    /// `encode`, and returns its handle.
    pub fn register(&mut self, name: &'static str, encode: Encoder) -> FrameVariant {
        let slot = u16::try_from(self.names.len()).expect("fewer than 65,536 frame variants");
        self.names.push(name);
        FrameVariant { slot, encode }
    }

    /// Number of variants, i.e. cache slots per delivery.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True before the first registration.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The variants' names, in slot order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn first(_: &Delivery) -> Bytes {
        Bytes::from_static(b"first")
    }

    fn second(d: &Delivery) -> Bytes {
        d.payload.clone()
    }

    #[test]
    fn each_variant_gets_its_own_slot_and_encoder() {
        let mut variants = FrameVariants::new();
        let a = variants.register("test/a", first);
        let b = variants.register("test/b", second);
        assert_eq!((a.slot(), b.slot(), variants.len()), (0, 1, 2));
        assert_ne!(a, b);
        let delivery = Delivery::new(
            Arc::from("s"),
            1,
            0,
            0,
            Bytes::from_static(b"{}"),
            variants.len(),
        );
        assert_eq!(&delivery.frame(a)[..], b"first");
        assert_eq!(&delivery.frame(b)[..], b"{}");
        assert_eq!(variants.names(), ["test/a", "test/b"]);
    }
}
