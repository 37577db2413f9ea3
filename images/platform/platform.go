// Package platform defines the images of the e-commerce platform the
// agent seeds (the ecommerce namespace), built here because the nodes
// reach no registry: each is a Debian 12 root made by
// tools/platform/roots.sh from Debian's package of the program, with the
// user the seeded manifests run it as, or a static Go program.
//
//   - postgresql (15): Debian's postgresql-15 as uid 999 "postgres", with
//     an entrypoint doing what the official image's does on a first start
//     (platform/postgresql/entrypoint.sh).
//   - redis (7.0): Debian's redis-server as uid 999.
//   - ecommerce-backend and ecommerce-frontend (1.4.0): the reference apps
//     of platform/ (FastAPI on Debian's python3-fastapi, uvicorn and
//     psycopg2; a storefront served by Debian's nginx).
//   - alertmanager (0.25), postgres-exporter (0.11): Debian's packages,
//     as nobody.
//   - prometheus, kube-state-metrics and log-shipper: static Go programs
//     (images/prometheus and images/kube-state-metrics pin the upstream
//     modules: Debian's Prometheus has no Kubernetes service discovery;
//     images/log-shipper is ours, in place of Fluent Bit, which cannot be
//     built here).
//
// The tags are the Debian versions' major and minor (mkplatform checks
// them against the roots' packages), not the upstream images' tags of the
// seeds' first draft; docs/platform.md maps one to the other.
package platform

import (
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/images/oci"
)

// Registry is the registry part of every platform image's name; like the
// node images', it serves nothing (the images exist where the agent
// imported them), and seed.image_registry replaces it on clusters that
// pull.
const Registry = "ecom-agent.local/"

// The images' names.
const (
	PostgreSQLImage       = Registry + "postgresql:15"
	RedisImage            = Registry + "redis:7.0"
	BackendImage          = Registry + "ecommerce-backend:" + AppVersion
	FrontendImage         = Registry + "ecommerce-frontend:" + AppVersion
	PrometheusImage       = Registry + "prometheus:" + PrometheusVersion
	AlertmanagerImage     = Registry + "alertmanager:0.25"
	PostgresExporterImage = Registry + "postgres-exporter:0.11"
	KubeStateMetricsImage = Registry + "kube-state-metrics:" + KubeStateMetricsVersion
	LogShipperImage       = Registry + "log-shipper:1.0"
)

// AppVersion is the reference backend's and frontend's version, the
// seeds' version label.
const AppVersion = "1.4.0"

// KubeStateMetricsVersion is the release images/kube-state-metrics/go.mod
// builds (with a "v" there); a test checks they agree.
const KubeStateMetricsVersion = "2.20.0"

// PrometheusVersion is the Prometheus release images/prometheus/go.mod
// builds (the module's v0.316.0 is Prometheus 3.16.0); a test checks
// they agree.
const PrometheusVersion = "3.16.0"

// PrometheusTags are the build tags of Prometheus: of the service
// discovery mechanisms, only Kubernetes' (the file and HTTP ones are
// always in).
var PrometheusTags = []string{"remove_all_sd", "enable_kubernetes_sd"}

// Debian is, for each image built from a Debian root, the root's file
// name in tools/platform/roots.sh's output, the Debian package of its
// program and the version prefix its tag stands for.
var Debian = []struct {
	Image, Root, Package, Version string
}{
	{PostgreSQLImage, "postgresql.tar", "postgresql-15", "15."},
	{RedisImage, "redis.tar", "redis-server", "5:7.0."},
	{BackendImage, "backend.tar", "python3-fastapi", ""},
	{FrontendImage, "frontend.tar", "nginx-light", ""},
	{AlertmanagerImage, "alertmanager.tar", "prometheus-alertmanager", "0.25."},
	{PostgresExporterImage, "postgres-exporter.tar", "prometheus-postgres-exporter", "0.11."},
}

// Inputs are what the images are made of.
type Inputs struct {
	Arch    string
	Created time.Time
	// Roots are the Debian roots by file name (Debian[i].Root),
	// uncompressed tars.
	Roots map[string][]byte
	// Static Go programs.
	Prometheus, KubeStateMetrics, LogShipper []byte
	// PostgreSQLEntrypoint is platform/postgresql/entrypoint.sh.
	PostgreSQLEntrypoint []byte
	// Backend and Frontend are the apps' files, by path relative to
	// platform/backend and platform/frontend.
	Backend, Frontend map[string][]byte
}

// Archive is one image and its archive's file name.
type Archive struct {
	File  string
	Image oci.Image
}

// Paths inside the images.
const (
	BackendDir         = "/opt/ecom-backend"
	FrontendDir        = "/usr/share/ecom-frontend"
	FrontendEntrypoint = "/usr/local/bin/frontend-entrypoint"
	FrontendTemplate   = "/etc/ecom-frontend/nginx.conf.template"
	PostgreSQLBin      = "/usr/lib/postgresql/15/bin"
	pathEnv            = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Images returns every platform image, one archive per image.
func Images(in Inputs) ([]Archive, error) {
	var out []Archive
	add := func(img oci.Image, title, description string) {
		img.Architecture, img.Created = in.Arch, in.Created
		repo, tag, err := oci.SplitName(img.Name)
		if err != nil {
			panic(err) // the names above are constants
		}
		img.Config.Labels = map[string]string{
			"org.opencontainers.image.title":       title,
			"org.opencontainers.image.description": description,
			"org.opencontainers.image.version":     tag,
		}
		out = append(out, Archive{File: strings.TrimPrefix(repo, Registry) + ".tar", Image: img})
	}
	root := func(image string) []byte {
		for _, d := range Debian {
			if d.Image == image {
				return in.Roots[d.Root]
			}
		}
		return nil
	}
	for _, d := range Debian {
		if len(in.Roots[d.Root]) == 0 {
			return nil, fmt.Errorf("the Debian root %s of %s is missing (tools/platform/roots.sh)", d.Root, d.Image)
		}
	}
	if len(in.PostgreSQLEntrypoint) == 0 || len(in.Backend) == 0 || len(in.Frontend) == 0 || len(in.Prometheus) == 0 || len(in.KubeStateMetrics) == 0 || len(in.LogShipper) == 0 {
		return nil, fmt.Errorf("an input is missing: the entrypoint, the apps' files and both Go programs are needed")
	}

	add(oci.Image{
		Name: PostgreSQLImage, Base: root(PostgreSQLImage),
		Files: []oci.File{{Path: "/usr/local/bin/docker-entrypoint.sh", Mode: 0o755, Content: in.PostgreSQLEntrypoint}},
		Config: oci.Config{
			Entrypoint: []string{"docker-entrypoint.sh"}, Cmd: []string{"postgres"},
			Env:          []string{"PATH=" + PostgreSQLBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PGDATA=/var/lib/postgresql/data", "LANG=C.UTF-8"},
			ExposedPorts: []string{"5432/tcp"}, User: "999:999",
		},
	}, "postgresql", "PostgreSQL 15 from Debian's postgresql-15, built by ecom-agent")
	add(oci.Image{
		Name: RedisImage, Base: root(RedisImage),
		Config: oci.Config{Cmd: []string{"redis-server"}, Env: []string{pathEnv}, ExposedPorts: []string{"6379/tcp"}, User: "999:999", WorkingDir: "/data"},
	}, "redis", "Redis 7.0 from Debian's redis-server, built by ecom-agent")

	var backend []oci.File
	for p, c := range in.Backend {
		backend = append(backend, oci.File{Path: BackendDir + "/" + p, Mode: 0o644, Content: c})
	}
	add(oci.Image{
		Name: BackendImage, Base: root(BackendImage), Files: backend,
		Config: oci.Config{
			Entrypoint:   []string{"python3", "-m", "ecom_backend"},
			Env:          []string{pathEnv, "PYTHONPATH=" + BackendDir, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LANG=C.UTF-8"},
			ExposedPorts: []string{"8000/tcp"}, User: "10001:10001", WorkingDir: BackendDir,
		},
	}, "ecommerce-backend", "the platform's reference backend (platform/backend): FastAPI on Debian's python3-fastapi, uvicorn and psycopg2")

	var frontend []oci.File
	for p, c := range in.Frontend {
		switch {
		case p == "entrypoint.sh":
			frontend = append(frontend, oci.File{Path: FrontendEntrypoint, Mode: 0o755, Content: c})
		case p == "nginx.conf.template":
			frontend = append(frontend, oci.File{Path: FrontendTemplate, Mode: 0o644, Content: c})
		default:
			frontend = append(frontend, oci.File{Path: FrontendDir + "/" + p, Mode: 0o644, Content: c})
		}
	}
	add(oci.Image{
		Name: FrontendImage, Base: root(FrontendImage), Files: frontend,
		Config: oci.Config{
			Entrypoint:   []string{FrontendEntrypoint},
			Env:          []string{pathEnv, "NGINX_PORT=8080", "API_BASE_URL=http://backend-service:8000"},
			ExposedPorts: []string{"8080/tcp"}, User: "101:101",
		},
	}, "ecommerce-frontend", "the platform's reference storefront (platform/frontend) served by Debian's nginx")

	add(oci.Image{
		Name: PrometheusImage,
		Files: []oci.File{
			{Path: "/bin/prometheus", Mode: 0o755, Content: in.Prometheus},
			{Path: "/prometheus", Mode: fs.ModeDir | 0o777},
		},
		Config: oci.Config{
			Entrypoint: []string{"/bin/prometheus"}, Cmd: []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"},
			ExposedPorts: []string{"9090/tcp"}, User: "65534:65534", WorkingDir: "/prometheus",
		},
	}, "prometheus", "Prometheus "+PrometheusVersion+", built by ecom-agent from its Go module with Kubernetes service discovery")
	add(oci.Image{
		Name: AlertmanagerImage, Base: root(AlertmanagerImage),
		Config: oci.Config{
			Entrypoint: []string{"/usr/bin/prometheus-alertmanager"}, Cmd: []string{"--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"},
			Env: []string{pathEnv}, ExposedPorts: []string{"9093/tcp"}, User: "65534:65534", WorkingDir: "/alertmanager",
		},
	}, "alertmanager", "Alertmanager 0.25 from Debian's prometheus-alertmanager, built by ecom-agent")
	add(oci.Image{
		Name: PostgresExporterImage, Base: root(PostgresExporterImage),
		Config: oci.Config{
			Entrypoint: []string{"/usr/bin/prometheus-postgres-exporter"},
			Env:        []string{pathEnv}, ExposedPorts: []string{"9187/tcp"}, User: "65534:65534",
		},
	}, "postgres-exporter", "postgres_exporter 0.11 from Debian's prometheus-postgres-exporter, built by ecom-agent")

	add(oci.Image{
		Name:  KubeStateMetricsImage,
		Files: []oci.File{{Path: "/kube-state-metrics", Mode: 0o755, Content: in.KubeStateMetrics}},
		Config: oci.Config{
			Entrypoint: []string{"/kube-state-metrics"}, Cmd: []string{"--port=8080", "--telemetry-port=8081"},
			ExposedPorts: []string{"8080/tcp", "8081/tcp"}, User: "65534:65534",
		},
	}, "kube-state-metrics", "kube-state-metrics "+KubeStateMetricsVersion+", built by ecom-agent from its Go module")
	add(oci.Image{
		Name:  LogShipperImage,
		Files: []oci.File{{Path: "/log-shipper", Mode: 0o755, Content: in.LogShipper}},
		Config: oci.Config{
			Entrypoint: []string{"/log-shipper"}, ExposedPorts: []string{"2020/tcp"}, User: "65534:65534",
		},
	}, "log-shipper", "ecom-agent's log shipper (images/log-shipper): tails JSON log files to its output")
	return out, nil
}

// CheckVersions checks each Debian root's program against the version its
// tag stands for, given `name package version` lines (roots.sh's
// packages.txt): a Debian update past the tag must change the tag.
func CheckVersions(packages string) error {
	have := map[string]string{}
	for _, l := range strings.Split(packages, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 {
			have[f[0]+".tar "+f[1]] = f[2]
		}
	}
	for _, d := range Debian {
		v, ok := have[d.Root+" "+d.Package]
		if !ok {
			return fmt.Errorf("the root %s has no package %s", d.Root, d.Package)
		}
		if !strings.HasPrefix(v, d.Version) {
			return fmt.Errorf("%s in %s is %s, not the %s* that %s's tag says: change the tag in images/platform", d.Package, d.Root, v, d.Version, d.Image)
		}
	}
	return nil
}
