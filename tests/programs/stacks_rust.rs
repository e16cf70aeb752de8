//! The deepest known call chain in Rust (rustc -O -g): main -> level_1 -> ...
//! -> level_12 -> Vec allocation; call lines are marked with comments.
use std::hint::black_box;

const ALLOC_SIZE: usize = 98_765;

#[inline(never)]
fn level_12(x: usize) -> Vec<u8> {
    let v = vec![x as u8; ALLOC_SIZE + x]; // @alloc
    black_box(v)
}
#[inline(never)]
fn level_11(x: usize) -> Vec<u8> { let v = level_12(black_box(x)); /* @call11 */ black_box(v) }
#[inline(never)]
fn level_10(x: usize) -> Vec<u8> { let v = level_11(black_box(x)); /* @call10 */ black_box(v) }
#[inline(never)]
fn level_9(x: usize) -> Vec<u8> { let v = level_10(black_box(x)); /* @call9 */ black_box(v) }
#[inline(never)]
fn level_8(x: usize) -> Vec<u8> { let v = level_9(black_box(x)); /* @call8 */ black_box(v) }
#[inline(never)]
fn level_7(x: usize) -> Vec<u8> { let v = level_8(black_box(x)); /* @call7 */ black_box(v) }
#[inline(never)]
fn level_6(x: usize) -> Vec<u8> { let v = level_7(black_box(x)); /* @call6 */ black_box(v) }
#[inline(never)]
fn level_5(x: usize) -> Vec<u8> { let v = level_6(black_box(x)); /* @call5 */ black_box(v) }
#[inline(never)]
fn level_4(x: usize) -> Vec<u8> { let v = level_5(black_box(x)); /* @call4 */ black_box(v) }
#[inline(never)]
fn level_3(x: usize) -> Vec<u8> { let v = level_4(black_box(x)); /* @call3 */ black_box(v) }
#[inline(never)]
fn level_2(x: usize) -> Vec<u8> { let v = level_3(black_box(x)); /* @call2 */ black_box(v) }
#[inline(never)]
fn level_1(x: usize) -> Vec<u8> { let v = level_2(black_box(x)); /* @call1 */ black_box(v) }

fn main() {
    let v = level_1(black_box(1)); // @main
    println!("{}", v.len() > 0);
}
