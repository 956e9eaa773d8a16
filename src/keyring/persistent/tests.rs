//! Both tables against their std models.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum VecOp {
    Push(u32),
    Pop,
    SwapRemove(usize),
    Set(usize, u32),
    Snapshot,
}

fn vec_op() -> impl Strategy<Value = VecOp> {
    prop_oneof![
        6 => any::<u32>().prop_map(VecOp::Push),
        1 => Just(VecOp::Pop),
        2 => any::<usize>().prop_map(VecOp::SwapRemove),
        2 => (any::<usize>(), any::<u32>()).prop_map(|(i, v)| VecOp::Set(i, v)),
        1 => Just(VecOp::Snapshot),
    ]
}

#[derive(Debug, Clone)]
enum MapOp {
    Insert(u16, u32),
    Remove(u16),
    Snapshot,
}

fn map_op() -> impl Strategy<Value = MapOp> {
    prop_oneof![
        4 => (0u16..600, any::<u32>()).prop_map(|(k, v)| MapOp::Insert(k, v)),
        2 => (0u16..600).prop_map(MapOp::Remove),
        1 => Just(MapOp::Snapshot),
    ]
}

#[test]
fn a_vector_grows_and_shrinks_through_every_height() {
    let mut vec = PVec::default();
    let n = WIDTH * WIDTH * 2 + 5;
    for i in 0..n {
        vec.push(i);
    }
    assert_eq!(vec.len(), n);
    assert_eq!(vec.height, 2);
    assert!(vec.iter().copied().eq(0..n));
    assert_eq!(vec.get(n - 1), Some(&(n - 1)));
    assert_eq!(vec.get(n), None);
    // Built at once, it has the shape pushes gave it: it shrinks the same way.
    let mut built: PVec<usize> = (0..n).collect();
    assert_eq!((built.len(), built.height), (n, 2));
    for i in (0..n).rev() {
        assert_eq!(vec.pop(), Some(i));
        assert_eq!(built.pop(), Some(i));
        assert_eq!(built.height, vec.height);
    }
    assert_eq!((vec.len(), vec.height, vec.pop()), (0, 0, None));
    assert_eq!((built.len(), built.height, built.pop()), (0, 0, None));
}

proptest! {
    /// The persistent vector agrees with `Vec` over any sequence of operations, and a clone
    /// taken at any point keeps its contents while the original changes (a snapshot).
    #[test]
    fn vector_matches_vec_and_snapshots_stay_frozen(
        start in 0usize..300,
        ops in proptest::collection::vec(vec_op(), 0..200),
    ) {
        let mut model: Vec<u32> = (0..start as u32).collect();
        let mut vec: PVec<u32> = model.iter().copied().collect();
        let mut snapshots: Vec<(Vec<u32>, PVec<u32>)> = Vec::new();
        for op in ops {
            match op {
                VecOp::Push(v) => { model.push(v); vec.push(v); }
                VecOp::Pop => prop_assert_eq!(vec.pop(), model.pop()),
                VecOp::SwapRemove(i) => {
                    let i = if model.is_empty() { i } else { i % (model.len() + 1) };
                    let expected = (i < model.len()).then(|| model.swap_remove(i));
                    prop_assert_eq!(vec.swap_remove(i), expected);
                }
                VecOp::Set(i, v) => {
                    let i = if model.is_empty() { i } else { i % model.len() };
                    if let Some(place) = model.get_mut(i) { *place = v; }
                    if let Some(place) = vec.get_mut(i) { *place = v; }
                }
                VecOp::Snapshot => snapshots.push((model.clone(), vec.clone())),
            }
            prop_assert_eq!(vec.len(), model.len());
        }
        prop_assert!(vec.iter().eq(model.iter()));
        for (i, v) in model.iter().enumerate() {
            prop_assert_eq!(vec.get(i), Some(v));
        }
        for (frozen, snapshot) in snapshots {
            prop_assert!(snapshot.iter().eq(frozen.iter()));
        }
    }

    /// The persistent map agrees with `HashMap`, and its snapshots stay frozen.
    #[test]
    fn map_matches_hashmap_and_snapshots_stay_frozen(
        ops in proptest::collection::vec(map_op(), 0..400),
    ) {
        let mut model: HashMap<u16, u32> = HashMap::new();
        let mut map: PMap<u16, u32> = PMap::default();
        let mut snapshots: Vec<(HashMap<u16, u32>, PMap<u16, u32>)> = Vec::new();
        for op in ops {
            match op {
                MapOp::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                MapOp::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                MapOp::Snapshot => snapshots.push((model.clone(), map.clone())),
            }
            prop_assert_eq!(map.len(), model.len());
        }
        for k in 0..600u16 {
            prop_assert_eq!(map.get(&k), model.get(&k));
        }
        for (frozen, snapshot) in snapshots {
            for (k, v) in &frozen {
                prop_assert_eq!(snapshot.get(k), Some(v));
            }
            prop_assert_eq!(snapshot.len(), frozen.len());
        }
    }
}
