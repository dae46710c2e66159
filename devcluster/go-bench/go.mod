module github.com/image-compat-extender/devcluster/go-bench

go 1.26
