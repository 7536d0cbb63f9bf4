terraform {
  # 1.2: the lifecycle precondition on the MemoryDB cluster (see main.tf).
  required_version = ">= 1.2"

  required_providers {
    # 5.78: aws_memorydb_cluster takes `engine` (valkey); 6.x kept these resources as they are.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.78, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}
