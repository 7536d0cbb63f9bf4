terraform {
  # Nothing newer than Terraform 1.0 is used here (no optional(), no preconditions).
  required_version = ">= 1.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23, < 4.0"
    }
    # Only `values = [yamlencode(...)]` is used on helm_release, which reads the same in the
    # helm provider v2 and v3 (`set` blocks did not survive the move to v3).
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12, < 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}
