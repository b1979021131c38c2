//! The canvas's GPU side: a WGSL pipeline (shaders/canvas.wgsl) drawn through an egui_wgpu paint
//! callback, with the image and mask as textures that are uploaded when they change.

use std::sync::{Arc, Mutex};

use crate::document::Rect;

use eframe::egui_wgpu::{self, wgpu, CallbackResources, CallbackTrait, ScreenDescriptor};

/// What a texture holds: nothing yet, a revision of the document's layer, a job's preview
/// (by its number), or a staged result (by the document revision and its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Content {
    #[default]
    Empty,
    Document(u64),
    Preview(u64),
    Staged {
        revision: u64,
        index: usize,
    },
}

/// Pixels for a texture: all of it, a changed region, or nothing new.
pub enum Upload {
    None,
    Full {
        content: Content,
        data: Arc<Vec<u8>>,
    },
    /// Valid only over the texture holding document revision `from`.
    Patch {
        from: u64,
        to: u64,
        region: Rect,
        data: Vec<u8>,
    },
}

/// What the GPU textures hold, written by the render side and read by the view to decide
/// between a patch and a full upload.
#[derive(Default)]
pub struct GpuRevisions {
    pub image: Mutex<Content>,
    pub mask: Mutex<Content>,
}

impl GpuRevisions {
    pub fn image(&self) -> Content {
        self.image.lock().map(|c| *c).unwrap_or_default()
    }

    pub fn mask(&self) -> Content {
        self.mask.lock().map(|c| *c).unwrap_or_default()
    }

    fn store(&self, image: Content, mask: Content) {
        if let Ok(mut c) = self.image.lock() {
            *c = image;
        }
        if let Ok(mut c) = self.mask.lock() {
            *c = mask;
        }
    }
}

/// What one frame of the canvas shows.
pub struct CanvasFrame {
    /// Texture size: the shown image's.
    pub size: (usize, usize),
    pub image: Upload,
    pub mask: Upload,
    pub revisions: Arc<GpuRevisions>,
    /// Image rectangle on screen, in points.
    pub image_rect: eframe::egui::Rect,
    pub show_mask: bool,
    pub dark: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ViewUniform {
    image_min: [f32; 2],
    image_size: [f32; 2],
    mask_tint: [f32; 4],
    background: [f32; 4],
    checker: f32,
    show_mask: f32,
    _pad: [f32; 2],
}

struct Textures {
    size: (usize, usize),
    image: wgpu::Texture,
    mask: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    image_content: Content,
    mask_content: Content,
}

pub struct CanvasRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    uniform: wgpu::Buffer,
    textures: Option<Textures>,
}

impl CanvasRenderer {
    pub fn install(render_state: &egui_wgpu::RenderState) {
        let device = &render_state.device;
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("canvas"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/canvas.wgsl").into()),
        });
        let texture_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: true },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("canvas"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                texture_entry(1),
                texture_entry(2),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("canvas"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("canvas"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: Default::default(),
            },
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                targets: &[Some(render_state.target_format.into())],
                compilation_options: Default::default(),
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        // Nearest when zoomed in, so a painter sees pixels; linear when zoomed out.
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("canvas"),
            mag_filter: wgpu::FilterMode::Nearest,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("canvas view"),
            size: std::mem::size_of::<ViewUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        render_state
            .renderer
            .write()
            .callback_resources
            .insert(CanvasRenderer {
                pipeline,
                layout,
                sampler,
                uniform,
                textures: None,
            });
    }

    fn ensure_textures(&mut self, device: &wgpu::Device, size: (usize, usize)) -> &mut Textures {
        if self.textures.as_ref().map(|t| t.size) != Some(size) {
            let make = |format, label| {
                device.create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size: wgpu::Extent3d {
                        width: size.0 as u32,
                        height: size.1 as u32,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                })
            };
            // Unorm, not Srgb: the values go to the framebuffer as they are, as egui's do.
            let image = make(wgpu::TextureFormat::Rgba8Unorm, "canvas image");
            let mask = make(wgpu::TextureFormat::R8Unorm, "canvas mask");
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("canvas"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: self.uniform.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(
                            &image.create_view(&Default::default()),
                        ),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(
                            &mask.create_view(&Default::default()),
                        ),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: wgpu::BindingResource::Sampler(&self.sampler),
                    },
                ],
            });
            self.textures = Some(Textures {
                size,
                image,
                mask,
                bind_group,
                image_content: Content::Empty,
                mask_content: Content::Empty,
            });
        }
        self.textures
            .as_mut()
            .unwrap_or_else(|| unreachable!("created above"))
    }
}

fn write(
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    bytes_per_pixel: usize,
    r: Rect,
    data: &[u8],
) {
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture,
            mip_level: 0,
            origin: wgpu::Origin3d {
                x: r.x as u32,
                y: r.y as u32,
                z: 0,
            },
            aspect: wgpu::TextureAspect::All,
        },
        data,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some((r.width * bytes_per_pixel) as u32),
            rows_per_image: Some(r.height as u32),
        },
        wgpu::Extent3d {
            width: r.width as u32,
            height: r.height as u32,
            depth_or_array_layers: 1,
        },
    );
}

/// Applies an upload to a texture holding `held`; returns what it holds afterwards.
fn apply(
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    bpp: usize,
    size: (usize, usize),
    held: Content,
    upload: &Upload,
) -> Content {
    match upload {
        Upload::None => held,
        Upload::Full { content, data } => {
            if *content != held && data.len() == size.0 * size.1 * bpp {
                write(
                    queue,
                    texture,
                    bpp,
                    Rect {
                        x: 0,
                        y: 0,
                        width: size.0,
                        height: size.1,
                    },
                    data,
                );
                *content
            } else {
                held
            }
        }
        Upload::Patch {
            from,
            to,
            region,
            data,
        } => {
            let fits = region.x + region.width <= size.0
                && region.y + region.height <= size.1
                && data.len() == region.width * region.height * bpp;
            if held == Content::Document(*from) && fits && region.width > 0 && region.height > 0 {
                write(queue, texture, bpp, *region, data);
                Content::Document(*to)
            } else {
                // Out of step: hold nothing, and the view sends everything next frame.
                Content::Empty
            }
        }
    }
}

pub struct CanvasCallback(pub Arc<CanvasFrame>);

impl CallbackTrait for CanvasCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(renderer) = resources.get_mut::<CanvasRenderer>() else {
            return vec![];
        };
        let frame = &self.0;
        let size = (frame.size.0.max(1), frame.size.1.max(1));
        let uniform = ViewUniform {
            image_min: [
                frame.image_rect.min.x * screen.pixels_per_point,
                frame.image_rect.min.y * screen.pixels_per_point,
            ],
            image_size: [
                frame.image_rect.width() * screen.pixels_per_point,
                frame.image_rect.height() * screen.pixels_per_point,
            ],
            mask_tint: [0.93, 0.25, 0.55, 0.5],
            background: if frame.dark {
                [0.08, 0.08, 0.09, 1.0]
            } else {
                [0.78, 0.78, 0.8, 1.0]
            },
            checker: 8.0 * screen.pixels_per_point,
            show_mask: if frame.show_mask { 1.0 } else { 0.0 },
            _pad: [0.0; 2],
        };
        queue.write_buffer(&renderer.uniform, 0, bytemuck::bytes_of(&uniform));
        let textures = renderer.ensure_textures(device, size);
        textures.image_content = apply(
            queue,
            &textures.image,
            4,
            size,
            textures.image_content,
            &frame.image,
        );
        textures.mask_content = apply(
            queue,
            &textures.mask,
            1,
            size,
            textures.mask_content,
            &frame.mask,
        );
        frame
            .revisions
            .store(textures.image_content, textures.mask_content);
        vec![]
    }

    fn paint(
        &self,
        _info: eframe::egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(renderer) = resources.get::<CanvasRenderer>() else {
            return;
        };
        let Some(textures) = &renderer.textures else {
            return;
        };
        pass.set_pipeline(&renderer.pipeline);
        pass.set_bind_group(0, &textures.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}
