//! Weights that adapters (LoRA) may change for a job. Each linear and convolution layer built
//! while `collect` runs registers its weight under its name; an adapter sets an adapted weight
//! (the base plus its delta) in the slot and clears it afterwards. The base weight is never
//! written, so a job without adapters after one with them computes with the very same bits.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use candle_core::Tensor;

/// The adapted weight a layer uses in place of its own, when one is set.
#[derive(Debug, Default)]
pub struct WeightSlot {
    adapted: RwLock<Option<Tensor>>,
}

impl WeightSlot {
    /// The adapted weight, if an adapter set one.
    pub fn current(&self) -> Option<Tensor> {
        self.adapted.read().ok().and_then(|w| w.clone())
    }

    fn set(&self, weight: Option<Tensor>) {
        if let Ok(mut w) = self.adapted.write() {
            *w = weight;
        }
    }
}

/// A layer's base weight and its slot.
#[derive(Debug, Clone)]
pub struct Registered {
    pub base: Tensor,
    slot: Arc<WeightSlot>,
}

/// The adaptable weights of one network, by the name its loader gave them (diffusers names:
/// `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`,
/// `encoder.layers.0.self_attn.q_proj`).
#[derive(Debug, Default, Clone)]
pub struct SlotRegistry {
    slots: HashMap<String, Registered>,
}

impl SlotRegistry {
    pub fn get(&self, name: &str) -> Option<&Registered> {
        self.slots.get(name)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// Makes `name` compute with `weight` (None: its own again).
    pub fn set(&self, name: &str, weight: Option<Tensor>) -> bool {
        match self.slots.get(name) {
            Some(r) => {
                r.slot.set(weight);
                true
            }
            None => false,
        }
    }

    /// Bytes of the adapted weights set now.
    pub fn adapted_bytes(&self) -> usize {
        self.slots
            .values()
            .filter_map(|r| r.slot.current())
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Every layer back to its own weight.
    pub fn clear(&self) {
        for r in self.slots.values() {
            r.slot.set(None);
        }
    }
}

thread_local! {
    /// The registry of the network being built on this thread, while `collect` runs.
    static COLLECTING: std::cell::RefCell<Option<SlotRegistry>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `build` and returns what it built with the slots of the layers it made.
pub fn collect<T>(build: impl FnOnce() -> T) -> (T, SlotRegistry) {
    let previous = COLLECTING.with(|c| c.replace(Some(SlotRegistry::default())));
    let built = build();
    let registry = COLLECTING
        .with(|c| std::mem::replace(&mut *c.borrow_mut(), previous))
        .unwrap_or_default();
    (built, registry)
}

/// A slot for the layer `name` with weight `base`, when a network is being collected.
pub fn register(name: String, base: &Tensor) -> Option<Arc<WeightSlot>> {
    COLLECTING.with(|c| {
        let mut c = c.borrow_mut();
        let registry = c.as_mut()?;
        let slot = Arc::new(WeightSlot::default());
        registry.slots.insert(
            name,
            Registered {
                base: base.clone(),
                slot: slot.clone(),
            },
        );
        Some(slot)
    })
}
