use lambda_http::{Error, Request, RequestExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = billing_page::Settings::from_lookup(|name| std::env::var(name).ok())?;
    let settings = &settings;
    lambda_http::run(service_fn(move |req: Request| async move {
        let path = req.raw_http_path().to_owned();
        Ok::<_, Error>(billing_page::answer(settings, req.method(), &path))
    }))
    .await
}
