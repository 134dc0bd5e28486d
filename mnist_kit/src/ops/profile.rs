//! Per-layer timing, for `mnist-kit bench --profile`: where a training step's time goes, layer
//! by layer, forward and backward. Off by default, when every hook is one relaxed atomic load.
//!
//! A layer's forward runs inside [`layer`], which names it and times it; every kit op made
//! inside is [`tagged`] with that name, so its backward (called later by candle's autograd)
//! is timed under the same name. Only the outermost timer on a thread records, and a layer
//! inside a layer (the convolution of an attention block) counts as part of it, so time is
//! never counted twice. Work no layer claims (the loss, reshapes, candle's own elementwise ops)
//! is what a step's total leaves over; the bench reports it as such.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

static ON: AtomicBool = AtomicBool::new(false);
/// Seconds and calls per `(layer, phase)`.
pub type Times = BTreeMap<(Arc<str>, Phase), (f64, usize)>;

static TIMES: Mutex<Times> = Mutex::new(BTreeMap::new());

thread_local! {
    static TAG: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Forward or backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The layer's forward.
    Forward,
    /// The backward of the kit ops the layer made.
    Backward,
}

/// Turns the hooks on or off (and clears what was recorded).
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
    take();
}

/// Whether the hooks record.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Seconds and calls recorded per `(layer, phase)` since the last call, and clears them.
pub fn take() -> Times {
    TIMES
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default()
}

/// Times a region under `(tag, phase)` until dropped; records only when outermost.
#[must_use]
pub struct Timer {
    start: Option<(Instant, Arc<str>, Phase)>,
    tag_before: Option<Option<Arc<str>>>,
    counted: bool,
}

impl Timer {
    fn new(tag: Option<&Arc<str>>, phase: Phase, set_tag: bool) -> Timer {
        let Some(tag) = tag.filter(|_| enabled()) else {
            return Timer {
                start: None,
                tag_before: None,
                counted: false,
            };
        };
        let outer = DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get() == 1
        });
        // Layers inside a layer (an attention block's convolution) belong to the outer one.
        let tag_before = (set_tag && outer).then(|| TAG.with(|t| t.replace(Some(tag.clone()))));
        Timer {
            start: outer.then(|| (Instant::now(), tag.clone(), phase)),
            tag_before,
            counted: true,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((t0, tag, phase)) = self.start.take() {
            let s = t0.elapsed().as_secs_f64();
            if let Ok(mut times) = TIMES.lock() {
                let e = times.entry((tag, phase)).or_insert((0.0, 0));
                e.0 += s;
                e.1 += 1;
            }
        }
        if let Some(before) = self.tag_before.take() {
            TAG.with(|t| *t.borrow_mut() = before);
        }
        if self.counted {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
}

/// Names the layer whose forward runs until the guard drops, and times it.
pub fn layer(name: &Arc<str>) -> Timer {
    Timer::new(Some(name), Phase::Forward, true)
}

/// `op`, tagged with the layer running now, so its backward is timed under that layer.
pub(crate) fn tagged<O>(op: O) -> Tagged<O> {
    let tag = if enabled() {
        TAG.with(|t| t.borrow().clone())
    } else {
        None
    };
    Tagged { op, tag }
}

/// A kit op with the layer that made it.
pub(crate) struct Tagged<O> {
    op: O,
    tag: Option<Arc<str>>,
}

impl<O> Tagged<O> {
    fn backward(&self) -> Timer {
        Timer::new(self.tag.as_ref(), Phase::Backward, false)
    }
}

impl<O: CustomOp1> CustomOp1 for Tagged<O> {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.op.cpu_fwd(s, l)
    }
    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let _t = self.backward();
        self.op.bwd(x, y, dy)
    }
}

impl<O: CustomOp2> CustomOp2 for Tagged<O> {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.op.cpu_fwd(s1, l1, s2, l2)
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = self.backward();
        self.op.bwd(a, b, y, dy)
    }
}

impl<O: CustomOp3> CustomOp3 for Tagged<O> {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.op.cpu_fwd(s1, l1, s2, l2, s3, l3)
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = self.backward();
        self.op.bwd(a, b, c, y, dy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_outermost_timer_records_and_tags_nest() {
        enable(true);
        let outer: Arc<str> = "outer".into();
        let inner: Arc<str> = "inner".into();
        {
            let _a = layer(&outer);
            {
                let _b = layer(&inner);
                // Inside a layer, its parts are the layer's.
                assert_eq!(TAG.with(|t| t.borrow().clone()), Some(outer.clone()));
            }
            assert_eq!(TAG.with(|t| t.borrow().clone()), Some(outer.clone()));
        }
        assert_eq!(TAG.with(|t| t.borrow().clone()), None);
        let times = take();
        enable(false);
        assert!(times.contains_key(&(outer, Phase::Forward)));
        assert!(!times.contains_key(&(inner, Phase::Forward)), "{times:?}");
        assert_eq!(DEPTH.with(|d| d.get()), 0);
    }
}
