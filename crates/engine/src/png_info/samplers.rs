//! Other tools' sampler and scheduler names mapped to ours (AUTOMATIC1111's display names):
//! ComfyUI and k-diffusion (`euler_ancestral`, `sample_dpmpp_2m` + `karras`), InvokeAI
//! (`euler_a`, `dpmpp_2m_k`), InvokeAI 2 and NovelAI (`k_euler_ancestral`, `k_lms`), Fooocus
//! (ComfyUI's names) and diffusers' scheduler class names.

use crate::sampler::SamplerKind;

/// Our sampler for a tool's `sampler` name and, where the tool keeps it apart, its
/// `scheduler` ("karras", "normal", …). `None` when we have no such sampler (the caller says
/// so rather than guessing).
pub fn ours(sampler: &str, scheduler: Option<&str>) -> Option<SamplerKind> {
    let raw = sampler.trim();
    if let Some(kind) = SamplerKind::from_name(raw) {
        // Already ours (AUTOMATIC1111's own names), with its "Schedule type" when given apart.
        return Some(with_schedule(kind, scheduler));
    }
    let mut name = raw.to_ascii_lowercase().replace([' ', '-'], "_");
    for prefix in ["sample_", "k_"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest.to_string();
        }
    }
    // InvokeAI's Karras variants end in `_k`.
    let (name, karras_suffix) = match name.strip_suffix("_k") {
        Some(base) => (base.to_string(), true),
        None => (name, false),
    };
    let base = match name.as_str() {
        "euler" => "Euler",
        "euler_a" | "euler_ancestral" | "eulerancestraldiscretescheduler" => "Euler a",
        "eulerdiscretescheduler" => "Euler",
        "heun" | "heundiscretescheduler" => "Heun",
        "lms" | "lmsdiscretescheduler" => "LMS",
        "dpmpp_2m" | "dpm++_2m" | "dpmsolvermultistepscheduler" => "DPM++ 2M",
        "ddim" | "ddimscheduler" => "DDIM",
        "plms" | "pndm" | "pndmscheduler" => "PNDM",
        "uni_pc" | "unipc" | "uni_pc_bh2" | "unipcmultistepscheduler" => "UniPC",
        "ddpm" | "ddpmscheduler" => "DDPM",
        "lcm" | "lcmscheduler" => "LCM",
        "tcd" | "tcdscheduler" => "TCD",
        _ => return None,
    };
    let kind = SamplerKind::from_name(base)?;
    let kind = with_schedule(kind, scheduler);
    if karras_suffix {
        return SamplerKind::from_name(&format!("{base} Karras")).or(Some(kind));
    }
    Some(kind)
}

/// `kind` on the Karras schedule when `scheduler` says so and it has one.
fn with_schedule(kind: SamplerKind, scheduler: Option<&str>) -> SamplerKind {
    let karras = scheduler.is_some_and(|s| s.trim().eq_ignore_ascii_case("karras"));
    if karras && !kind.karras {
        SamplerKind::from_name(&format!("{kind} Karras")).unwrap_or(kind)
    } else {
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(sampler: &str, scheduler: Option<&str>) -> Option<String> {
        ours(sampler, scheduler).map(|k| k.name())
    }

    #[test]
    fn every_tools_names() {
        let cases: [(&str, Option<&str>, Option<&str>); 20] = [
            ("DPM++ 2M Karras", None, Some("DPM++ 2M Karras")),
            ("DPM++ 2M", Some("Karras"), Some("DPM++ 2M Karras")),
            ("euler", Some("normal"), Some("Euler")),
            ("euler_ancestral", Some("normal"), Some("Euler a")),
            ("sample_dpmpp_2m", Some("karras"), Some("DPM++ 2M Karras")),
            ("dpmpp_2m", Some("karras"), Some("DPM++ 2M Karras")),
            ("k_euler_a", None, Some("Euler a")),
            ("k_euler_ancestral", None, Some("Euler a")),
            ("k_lms", None, Some("LMS")),
            ("k_euler", None, Some("Euler")),
            ("euler_a", None, Some("Euler a")),
            ("euler_k", None, Some("Euler Karras")),
            ("dpmpp_2m_k", None, Some("DPM++ 2M Karras")),
            ("unipc_k", None, Some("UniPC Karras")),
            ("plms", None, Some("PNDM")),
            ("ddim", Some("ddim_uniform"), Some("DDIM")),
            ("uni_pc_bh2", None, Some("UniPC")),
            ("lcm", Some("sgm_uniform"), Some("LCM")),
            ("dpmpp_2m_sde_gpu", Some("karras"), None),
            ("EulerAncestralDiscreteScheduler", None, Some("Euler a")),
        ];
        for (sampler, scheduler, want) in cases {
            assert_eq!(
                name(sampler, scheduler).as_deref(),
                want,
                "{sampler} {scheduler:?}"
            );
        }
    }
}
