// The canvas: the image over a checkerboard (where it is transparent or absent), the mask as
// a tinted overlay. One triangle covers the callback's viewport; each fragment finds its image
// pixel from its framebuffer position.

struct View {
    // Top-left of the image and its size, in framebuffer pixels.
    image_min: vec2<f32>,
    image_size: vec2<f32>,
    // RGB of the mask overlay and its opacity.
    mask_tint: vec4<f32>,
    // Outside the image.
    background: vec4<f32>,
    // Side of a checkerboard cell in framebuffer pixels.
    checker: f32,
    show_mask: f32,
    _pad: vec2<f32>,
};

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var image_tex: texture_2d<f32>;
@group(0) @binding(2) var mask_tex: texture_2d<f32>;
@group(0) @binding(3) var image_sampler: sampler;

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> @builtin(position) vec4<f32> {
    let corner = vec2<f32>(f32((index << 1u) & 2u), f32(index & 2u));
    return vec4<f32>(corner * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs_main(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let uv = (position.xy - view.image_min) / view.image_size;
    let color = textureSampleLevel(image_tex, image_sampler, uv, 0.0);
    let mask = textureSampleLevel(mask_tex, image_sampler, uv, 0.0).r;
    if (uv.x < 0.0 || uv.y < 0.0 || uv.x > 1.0 || uv.y > 1.0) {
        return view.background;
    }
    let cell = floor(position.xy / view.checker);
    let even = (i32(cell.x) + i32(cell.y)) % 2 == 0;
    let checker = select(vec3<f32>(0.42), vec3<f32>(0.58), even);
    var rgb = mix(checker, color.rgb, color.a);
    rgb = mix(rgb, view.mask_tint.rgb, mask * view.mask_tint.a * view.show_mask);
    return vec4<f32>(rgb, 1.0);
}
