//! The `autoscaling` group: upstream's `pkg/registry/autoscaling`, and the conversion
//! between its versions (`pkg/apis/autoscaling/v1/conversion.go`).

mod conversion;
pub mod horizontalpodautoscalers;
