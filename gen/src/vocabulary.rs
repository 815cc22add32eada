//! The words the generated recruitment data is made of.

/// A city with its country and coordinates, so distances in the example are real.
pub(crate) struct City {
    pub name: &'static str,
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
}

macro_rules! cities {
    ($(($name:expr, $country:expr, $lat:expr, $lon:expr)),* $(,)?) => {
        &[$(City { name: $name, country: $country, lat: $lat, lon: $lon }),*]
    };
}

pub(crate) const CITIES: &[City] = cities![
    ("Paris", "FR", 48.8566, 2.3522),
    ("Lyon", "FR", 45.7640, 4.8357),
    ("Marseille", "FR", 43.2965, 5.3698),
    ("Toulouse", "FR", 43.6047, 1.4442),
    ("Lille", "FR", 50.6292, 3.0573),
    ("Nantes", "FR", 47.2184, -1.5536),
    ("Berlin", "DE", 52.5200, 13.4050),
    ("München", "DE", 48.1351, 11.5820),
    ("Hamburg", "DE", 53.5511, 9.9937),
    ("Köln", "DE", 50.9375, 6.9603),
    ("Madrid", "ES", 40.4168, -3.7038),
    ("Barcelona", "ES", 41.3874, 2.1686),
    ("València", "ES", 39.4699, -0.3763),
    ("London", "GB", 51.5074, -0.1278),
    ("Manchester", "GB", 53.4808, -2.2426),
    ("Edinburgh", "GB", 55.9533, -3.1883),
    ("Amsterdam", "NL", 52.3676, 4.9041),
    ("Rotterdam", "NL", 51.9244, 4.4777),
    ("Kraków", "PL", 50.0647, 19.9450),
    ("Warszawa", "PL", 52.2297, 21.0122),
    ("Zürich", "CH", 47.3769, 8.5417),
    ("Genève", "CH", 46.2044, 6.1432),
];

pub(crate) const SKILLS: &[&str] = &[
    "rust",
    "sql",
    "python",
    "kafka",
    "spark",
    "airflow",
    "dbt",
    "java",
    "scala",
    "go",
    "kubernetes",
    "docker",
    "terraform",
    "aws",
    "gcp",
    "azure",
    "react",
    "typescript",
    "node",
    "postgres",
    "mysql",
    "redis",
    "flink",
    "pandas",
    "numpy",
    "pytorch",
    "tensorflow",
    "linux",
    "bash",
    "git",
    "graphql",
    "grpc",
    "c++",
    "kotlin",
    "swift",
    "ruby",
    "php",
    "excel",
    "tableau",
    "datafusion",
];

/// Spellings apps deliver for the same skill: the enrichment step must normalise them.
pub(crate) fn messy(skill: &str, variant: u64) -> String {
    match variant % 4 {
        0 => skill.to_owned(),
        1 => skill.to_uppercase(),
        2 => format!(" {skill}"),
        _ => {
            let mut chars = skill.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

pub(crate) const TITLES: &[&str] = &[
    "Data Engineer",
    "Senior Data Engineer",
    "Backend Developer",
    "Platform Engineer",
    "Machine Learning Engineer",
    "Data Scientist",
    "Analytics Engineer",
    "Site Reliability Engineer",
    "Frontend Developer",
    "Full Stack Developer",
    "Data Analyst",
    "Engineering Manager",
    "Lead Data Engineer",
    "DevOps Engineer",
    "Software Engineer",
];

pub(crate) const COMPANIES: &[&str] = &[
    "Acme Analytics",
    "Blue Harbor",
    "Cobalt Labs",
    "Delta Freight",
    "Evergreen Health",
    "Fjord Energy",
    "Granite Bank",
    "Helix Retail",
    "Iris Mobility",
    "Juniper Media",
    "Kestrel Games",
    "Lumen Insurance",
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Ana",
    "Bruno",
    "Chloé",
    "Dmitri",
    "Elif",
    "Fatou",
    "Gonzalo",
    "Hanna",
    "Ines",
    "Jonas",
    "Katarzyna",
    "Léa",
    "Mateo",
    "Noor",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tomás",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Martin", "Müller", "García", "Smith", "de Vries", "Kowalski", "Rossi", "Dubois", "Novák",
    "Jensen", "Silva", "Öztürk", "Nowak", "Bernard", "Schmidt", "López",
];

pub(crate) const PUBLISHERS: &[&str] = &[
    "jobboard",
    "socialnet",
    "aggregator",
    "careersite",
    "newsletter",
];

pub(crate) const CAMPAIGNS: &[&str] = &[
    "spring",
    "summer",
    "autumn",
    "winter",
    "evergreen",
    "relaunch",
];

pub(crate) const KEYWORDS: &[&str] = &[
    "remote",
    "senior",
    "rust",
    "python",
    "data",
    "kafka",
    "lead",
    "cloud",
    "ml",
    "sql",
    "streaming",
    "backend",
    "paris",
    "berlin",
    "startup",
];

/// Tracking event kinds, with the weight each gets.
pub(crate) const EVENT_KINDS: &[(&str, u64)] = &[
    ("click", 70),
    ("apply", 15),
    ("qualified", 6),
    ("unqualified", 5),
    ("conversion", 4),
];

pub(crate) const TIERS: &[&str] = &["silver", "gold", "internal"];
