package deb

import (
	"context"

	"github.com/goreleaser/nfpm/v2"
)

// PlatformImagesName is the package of the platform's images.
const PlatformImagesName = "ecom-agent-platform-images"

// PlatformImages describes the ecom-agent-platform-images package: the
// images of the e-commerce platform the agent seeds (PostgreSQL, Redis,
// the reference backend and frontend, Prometheus, Alertmanager, the
// exporters and the log shipper), as OCI archives tools/platform/images.sh
// built from Debian's packages and Go source, in the same directory as
// the node images, so the agent imports them before the kubelet starts.
// A cluster that pulls from a registry does not need it.
type PlatformImages struct {
	Common
	Archives []string
}

// Build writes the package into outDir and returns its path.
func (p PlatformImages) Build(ctx context.Context, outDir string) (string, error) {
	info, err := p.Info(ctx)
	if err != nil {
		return "", err
	}
	return writeFile(info, outDir)
}

// Info stages the package's files and returns its nfpm description.
func (p PlatformImages) Info(context.Context) (*nfpm.Info, error) {
	return archivePackage{
		name: PlatformImagesName, archives: p.Archives, build: "make platform-images",
		changelog: []string{
			"The platform's images built from Debian 12's packages and the",
			"ecom-agent source tree (make platform-images).",
		},
		description: `container images of the e-commerce platform, for air-gapped clusters
The images of the workloads ecom-agent seeds in the ecommerce namespace,
as OCI archives in /usr/share/ecom-agent/images, which the agent imports
into containerd before the kubelet starts: PostgreSQL 15, Redis 7.0,
Prometheus, Alertmanager and postgres_exporter from Debian 12's packages,
the platform's reference backend (FastAPI) and storefront (nginx),
kube-state-metrics and a log shipper built from Go source. Grafana is
not among them: it cannot be built here. A cluster that pulls its images
from a registry (seed.image_registry) does not need this package.`,
	}.info(p.Common)
}
