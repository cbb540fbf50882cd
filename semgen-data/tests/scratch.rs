use semgen_data::*;
#[test]
fn scratch() {
    let world = ShapesWorld::new(WorldConfig::default()).unwrap();
    for i in 0..4 {
    let c = world.clip(Split::Train, i).unwrap();
    println!("{}", c.caption());
    for o in &c.plan.objects {
        let col = o.colour.rgb();
        let cent = |t: usize| { let f = c.video.frame(t).unwrap(); let (mut sx, mut sy, mut n) = (0.0,0.0,0.0);
            for y in 0..64 { for x in 0..64 { let p = &f[(y*64+x)*3..]; let d: f64 = (0..3).map(|k| (p[k] as f64 - col[k] as f64).powi(2)).sum(); if d < 3600.0 { sx += x as f64 + 0.5; sy += y as f64+0.5; n += 1.0; } } } (sx/n, sy/n, n) };
        println!("  {:?} {:?} {:?} | {:?} {:?}", o.motions, o.centres[0], o.centres[16], cent(0), cent(16)); }
    }
}
